// Package broker is sockmq's MQTT 3.1.1 and 5 broker: its own connection
// and session engine, with mochi-mqtt's packets package as the codec. It
// serves MQTT over TCP, TLS and WebSocket (on the shared HTTP listener,
// which also carries /healthz, /metrics and handlers mounted by others).
//
// # Pieces
//
//   - conn.go, frame.go: a connection. Its reader frames packets from the
//     byte stream (refusing oversized ones from their header) and handles
//     them in order; its output is a FIFO of encoded packets, each possibly
//     held by a store batch ("gate"), written by a writer goroutine that
//     exists only while something can be written.
//   - conn_poll.go, listener_tcp.go: plain-TCP connections (Linux) have no
//     reader goroutine: internal/poller calls them when their socket is
//     readable, they handle what arrived on the poller's goroutine (only
//     CONNECT, which may wait, moves to a short-lived goroutine), write
//     their output at once with one non-blocking writev (a writer goroutine
//     takes over only what the socket did not accept), and re-arm, or
//     pause reading while too many acknowledgements wait for the store.
//     TLS and WebSocket connections keep a reader goroutine each.
//   - connect.go, session.go: CONNECT, authentication, client-id ownership,
//     takeover, and the session: subscriptions, the queue of QoS 1/2
//     messages with their packet ids and states, inbound QoS 2 ids.
//   - publish.go, subscribe.go, subindex.go, retained.go: routing a message
//     to subscriptions (a topic tree with shared groups), per-session
//     delivery within the send window, acknowledgements, retained messages
//     (a topic tree walked only where the reader's ACL allows).
//   - message.go, session.go, retained.go, memtrim.go: what a stored message
//     costs. A message is one 80-byte struct plus one allocation holding
//     topic and payload, shared by every queue and the retained tree that
//     hold it; a queued copy is a 32-byte entry by value in the session's
//     queue (packet ids are given at first send); a retained topic is a
//     16-byte slot in a map per level. After a burst, once the broker is
//     quiet, the trimmer returns freed memory and the store's mapped pages
//     to the OS (sockmq_memory_trims_total).
//   - lifecycle.go, clock.go: the end of a connection (wills, session
//     expiry) and the one goroutine that runs every timer.
//   - throttle.go, pubcache.go: the broker under load. The publisher
//     throttle (limits.throttle_queued) stops reading clients that publish
//     while the QoS 1/2 backlog of connected subscribers, all together, is
//     too long; a fan-out encodes each PUBLISH once per version and flags
//     and patches every subscriber's packet id into a copy.
//   - internal/store: persistence with group commit; restore.go rebuilds
//     sessions and retained messages from it.
//   - backplane.go: the Backplane hook that makes the broker one node of
//     a cluster (package cluster implements it): messages published here
//     are forwarded, filters' first and last subscriptions are reported
//     as interest, messages and retained updates from other nodes come
//     in through DeliverRemote and ApplyRetained and are never forwarded
//     again. Without a backplane none of it runs.
//   - gate.go, refuse.go, origin.go: every listener's connections pass one
//     gate (limits.max_connections, limits.max_connections_per_address);
//     WebSocket upgrades are checked against listeners.http.allowed_origins.
//
// # Acknowledgements are promises
//
// PUBACK and PUBREC to a publisher, SUBACK for a persistent session,
// PUBREL and PUBCOMP leave only after the store has committed what they
// promise: the packet is queued with the store batch holding those writes
// and released, in order, when that batch is committed. Deliveries of an
// inbound QoS 2 message wait for the batch recording its packet id, so a
// publisher's resend after a crash is recognised, never delivered twice.
//
// # Concurrency
//
// All exported methods of Server are safe for concurrent use. Lock order:
// the session table, then one session at a time, then a connection's
// output lock, then the store's lock (a leaf). Handlers given to Subscribe
// run on the publisher's goroutine and must not block: copy what is needed
// and hand it to another goroutine. New must be followed by Start;
// Shutdown may be called any number of times and stops every goroutine and
// timer the engine started before it closes the store.
package broker

// Package bridge serves SocketCluster clients (socketcluster-client 14 and
// 15+, unmodified) over WebSocket and shares their channels with MQTT: a
// channel is an MQTT topic, wildcard channels (sensors/+, sensors/#) are
// MQTT filters, and messages flow both ways through the broker. See
// README.md for the protocol subset, the payload mapping, login and the
// close codes.
//
// The package declares what it needs from the broker ([Broker]) and from
// authentication ([Authorizer]); it imports neither. cmd/sockmq adapts
// *broker.Server and *auth.Service to them.
//
// # Concurrency
//
// A socket is detached from net/http once upgraded (the HTTP handler's
// goroutine returns) and speaks WebSocket through internal/ws. An idle
// socket has no goroutine:
//
//   - Reads: the handler's epoll poller (internal/poller) watches the
//     connection; when it is readable a reader goroutine reads and handles
//     everything available (every inbound action: subscribe, publish,
//     login, procedures), then re-arms the watch and ends. At most one
//     reader runs per socket, so the per-socket state the reader owns
//     needs no lock. A connection the poller cannot watch (TLS, or no
//     epoll) keeps one reader goroutine for its life instead.
//   - Writes: everyone hands frames to the socket through a per-socket
//     queue bounded in bytes (bridge.max_queue_bytes); enqueueing never
//     blocks, and a socket that cannot keep up is closed with 4100. When
//     nothing is queued or being written, the enqueuing goroutine writes
//     the frames itself with one non-blocking write (direct.go); with a
//     broker that reads publishes in batches ([BatchDeferrer]) that write
//     waits for the end of the batch, so that a socket gets one write per
//     batch (FlushBatch, on the goroutine that ends the batch). With a
//     [ReadBatcher], the frames of one socket read are handled as such a
//     batch too, so a burst of publishes from a SocketCluster client
//     reaches each subscriber in one write. Whatever
//     the kernel does not take at once goes to a writer goroutine, which
//     exists only while something is queued: it writes the queue
//     (JSON-array batches), pings, pongs and the close frame, and ends
//     when the queue is empty. One writer at a time (the s.writing role),
//     so frames keep their order.
//   - Time: one ping wheel per handler (one goroutine) sends every socket
//     its pings and closes sockets that miss the handshake or pong
//     timeout; inbound traffic only stores a timestamp.
//   - Publishes: the reader hands each publish to the broker, which
//     delivers it before returning; with an [AsyncPublisher] the answer to
//     a publish invoke is sent from the store's commit (on the store's
//     goroutine), so the reader never waits for the disk while the frames
//     of a read are one batch. At most 256 publishes per socket wait for a
//     commit at once; beyond that the reader waits (Publish).
//
// A socket is cleaned up (channels left, Observer told) once its
// connection is closed and neither a reader nor a writer runs for it.
//
// The hub keeps one broker subscription per distinct MQTT filter, shared by
// every socket subscribed to it. Its handler runs on the publisher's
// goroutine (an MQTT client's read loop or an SC socket's reader): it
// serialises each message once and enqueues the same bytes to every member,
// running a per-message read check only for members whose subscription the
// ACL allows partially. It takes only a read lock and the sockets' queue
// locks, and never waits on a network write. A broker subscription
// outlives its last member by a second (a timer goroutine ends it), so
// subscribe/unsubscribe churn does not reach the broker.
//
// Per-socket request budgets (bridge.subscribe_rate, bridge.invoke_rate)
// and the retained messages still to replay for new subscriptions belong
// to the reader goroutine alone.
//
// Authorizer reloads re-check every socket on the reloading goroutine
// (non-blocking), and so do revocations (on the goroutine that calls
// Revoke, or on which a shared [Revocations] reports one). Timers run the
// login timeout and the delayed answers to failed logins; like other
// goroutines they only enqueue frames or request a close. [Handler.RegisterProcedure] and [Handler.Shutdown] are
// safe to call at any time and from any goroutine; Shutdown may be called
// more than once. [Observer] callbacks and [ProcedureFunc]s run on socket
// reader goroutines and must return quickly.
package bridge

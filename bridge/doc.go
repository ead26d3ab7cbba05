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
// Each socket has exactly two goroutines: the reader (the HTTP handler's
// goroutine, which also runs every inbound action: subscribe, publish,
// login, procedures) and the writer, the only goroutine that writes data
// frames and pings. Everyone else hands frames to the writer through a
// per-socket queue bounded in bytes (bridge.max_queue_bytes); enqueueing
// never blocks, and a socket that cannot keep up is closed with 4100.
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

// Package broker runs sockmq's embedded MQTT broker: a mochi-mqtt server with
// sockmq's listeners (MQTT over TCP and TLS, MQTT over WebSocket on a shared
// HTTP listener), its persistent store, its metrics and the policy hooks that
// replace mochi's unsafe defaults (connect timeout, packet size limit,
// reserved client ids, keepalive bounds, protected system topics).
//
// Every listener's connections pass one gate (gate.go) that counts them
// from accept to close against limits.max_connections and
// limits.max_connections_per_address, makes room by closing idle
// keep-alive HTTP connections, and answers the refused ones in their own
// protocol (refuse.go). WebSocket upgrades are checked against
// listeners.http.allowed_origins (origin.go).
//
// Other packages reach the broker through Server's small API: Publish,
// Subscribe and Retained for in-process messages, Handle for extra HTTP
// handlers, and Sessions for the connected clients. The broker never imports
// the packages that consume it (bridge, lwt, presence); they declare the
// interfaces they need.
//
// Concurrency: all exported methods of Server are safe for concurrent use.
// Subscribe handlers run on the goroutine of the publishing client and must
// not block; they should copy what they need and hand it to their own
// goroutine. New must be followed by Start, and Shutdown may be called any
// number of times from any goroutine.
package broker

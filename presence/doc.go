// Package presence tracks who is connected right now, MQTT clients and
// bridge sockets alike, and shows it two ways:
//
//   - MQTT-native: a retained JSON document per session at
//     $presence/clients/<id> (cleared with an empty retained message when the
//     session ends), and one event per change on $presence/connected and
//     $presence/disconnected;
//   - in process: List returns the current sessions (the bridge's
//     "presence" procedure).
//
// Ids are encoded (see TopicID) so that "/", "+" and "#" in a client id can
// neither add topic levels nor act as wildcards. Retained presence is never
// persisted by the broker, so nothing survives a restart, even kill -9.
//
// Concurrency: Connected and Disconnected may be called from any goroutine;
// they enqueue the change and return. A single goroutine applies changes in
// order and publishes, so a viewer sees them in the order they happened.
// List is safe for concurrent use. Close stops the goroutine after draining.
package presence

// Package presence tracks who is connected right now, MQTT clients and
// bridge sockets alike, and shows it two ways:
//
//   - MQTT-native: a retained JSON document per session at
//     $presence/clients/<id> (cleared with an empty retained message when the
//     session ends), and one event per change on $presence/connected and
//     $presence/disconnected;
//   - in process: Snapshot returns the current sessions with their JSON
//     documents, built once per change and shared (the bridge's "presence"
//     procedure answers from it); List returns a copy of the sessions.
//
// Ids are encoded (see TopicID) so that "/", "+" and "#" in a client id can
// neither add topic levels nor act as wildcards. Retained presence is never
// persisted by the broker, so nothing survives a restart, even kill -9.
//
// Concurrency: Connected and Disconnected may be called from any goroutine;
// they enqueue the change and return. A single goroutine applies changes in
// order and publishes, so a viewer sees them in the order they happened.
// List and Snapshot are safe for concurrent use. Close stops the goroutine after draining.
package presence

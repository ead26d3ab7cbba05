// Package cluster joins sockmq nodes over NATS so that several nodes share
// one channel space. A Node either runs an embedded nats-server with routes
// to its peers (cluster.embedded) or connects to an existing NATS cluster
// (cluster.nats); either way it checks at start-up that JetStream is
// enabled and that the server is recent enough (2.11 or newer, for per-key
// TTL), and refuses to start otherwise.
//
// The Backplane (backplane.go and the files beside it) implements the
// broker's broker.Backplane hook: MQTT topics map to NATS subjects
// (subject.go), a node subscribes only to the subjects its local
// subscribers want, QoS 1/2 messages are stored in a JetStream stream
// before the publisher is acknowledged, and retained messages live in a
// JetStream key-value bucket.
//
// Concurrency: Start returns a Node whose methods are safe for concurrent
// use; Shutdown may be called any number of times. The backplane's
// delivery runs on one goroutine per connection, so that messages of one
// origin node are handed to the broker in the order they were sent.
package cluster

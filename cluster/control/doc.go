// Package control keeps the cluster-wide control state of a sockmq node in
// NATS JetStream key-value buckets: who owns each MQTT client id (with
// compare-and-set epochs), which nodes are alive (a heartbeat key per node
// with a bucket TTL), the wills of connected clients, a mirror of each
// node's presence documents, and revoked bridge tokens.
//
// When a node stops heart-beating for longer than Config.NodeTTL, the
// surviving nodes race to create its reaper key; the winner publishes the
// node's pending wills (honouring will delay and the ACL) and presence
// leaves for its sessions. Each will and presence record is claimed by a
// compare-and-set delete before anything is published, so a will is sent
// once even if two nodes (or the restarted node itself) try at the same
// time.
//
// # Concurrency
//
// All exported methods of Controller and Revocations are safe for
// concurrent use. Claim, ClaimWill and Release make blocking JetStream
// calls bounded by Config.Timeout. Hooks run on the controller's own
// goroutines (one watcher per bucket, one heartbeat/reaper loop) and must
// not block for long. Start launches those goroutines; Shutdown stops them
// and may be called any number of times.
package control

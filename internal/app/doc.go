// Package app wires sockmq's components into one running process: the
// auth service, the MQTT broker, the SocketCluster bridge, presence and the
// bridge's last wills, with the small adapters between the narrow
// interfaces each package declares. cmd/sockmq runs it; end-to-end tests
// start it on 127.0.0.1 port 0 to exercise exactly what the binary runs.
//
// Concurrency: New, Start and Shutdown are called from one goroutine;
// Reload may be called from any goroutine; Shutdown is idempotent.
package app

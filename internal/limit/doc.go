// Package limit holds the building blocks sockmq uses to bound what one
// client can make the broker do: token buckets for request rates
// ([Bucket]), a growing delay for failed logins per remote address
// ([LoginGuard]), and a [Recorder] that counts every refusal by a limit in
// Prometheus and logs it without flooding the log.
//
// # Concurrency
//
// A [Bucket] is a plain value owned by one client; its owner serialises
// calls (it is used from the client's own goroutine or under the client's
// lock). [LoginGuard] and [Recorder] are safe for concurrent use.
package limit

// Package auth authenticates MQTT clients against a mosquitto-compatible
// password file and authorizes their topic access with a mosquitto-style
// ACL file.
//
// The package is a leaf: it imports only the standard library,
// golang.org/x/crypto and internal/topic. The broker adapts [Service] to mochi-mqtt hooks; auth
// itself knows nothing about MQTT packets.
//
// # Pieces
//
//   - [PasswordFile] reads, edits and atomically rewrites password files in
//     mosquitto's format ($7$ PBKDF2-SHA512, $6$ salted SHA-512, and bcrypt).
//     Comments, blank lines and order are kept when a file is rewritten.
//   - [ACL] parses a mosquitto acl_file and answers per-message checks
//     ([ACL.Allowed], no allocations) and per-subscription decisions
//     ([ACL.Subscription]). See ACL.md for the supported syntax.
//   - [ACL.ReadScope] compiles what one identity may read, so that a walk
//     over many topics (retained messages) can skip whole subtrees
//     ([ReadScope.Under]).
//   - Topic names and filters follow internal/topic, the one place for
//     MQTT's matching rules (including that wildcards in the first level
//     never match topics starting with '$').
//   - [Service] ties both files together, caches verified credentials, and
//     reloads the files ([Service.Reload], [Service.Watch]).
//
// # Concurrency
//
// A [Service] is safe for concurrent use. Its rules live in an immutable
// snapshot behind an atomic pointer: [Service.Allowed],
// [Service.Subscription] and [Service.UserExists] take no lock, and
// [Service.Authenticate] takes only a short mutex on the credential cache
// after the slow hash has been verified. [Service.Reload] builds a new
// snapshot and swaps it in; checks already running finish against the old
// one. Reloads are serialized. An [ACL] is immutable after parsing and safe
// for concurrent use. A [PasswordFile] is not safe for concurrent mutation.
//
// # Security notes
//
// Unknown users cost the same as wrong passwords: they are verified against a
// fake $7$ hash. Hash comparisons are constant-time. Passwords are never
// logged or stored; the credential cache keeps only an HMAC-SHA256 digest
// under a random per-process key.
package auth

// Package lwt gives clients of the SocketCluster bridge a last will, which
// SocketCluster itself lacks: a message the broker publishes for a socket
// that ends without a clean close.
//
// MQTT clients' wills are handled by the broker itself (mochi's will
// machinery plus sockmq's ACL and restart checks in package broker); this
// package is the counterpart for bridge sockets, with the same rules:
//
//   - a will is registered with the invoke setWill {channel, data, retain?,
//     delaySeconds?, qos?} and removed with clearWill; the payload is mapped
//     like a publish (the bridge's Encoder), and the caller must be allowed
//     to write the topic, both when the will is set and when it is sent;
//   - it is sent when the socket ends without a clean close (ping timeout,
//     TCP reset, kicked for being too slow, server error), never after the
//     client's own disconnect() (close codes 1000 and 1001 from the client);
//   - with delaySeconds it is sent after that delay; a later setWill or
//     clearWill for the same channel by the same authenticated user cancels
//     a pending delayed will, which is how a reconnecting client says "I am
//     back" (a new socket gets a new id). Anonymous sockets cannot cancel a
//     pending will from another socket;
//   - wills are bounded: at most Config.MaxWillsPerSocket per socket,
//     Config.MaxBytesPerUser bytes per user (open sockets' wills and delayed
//     ones of ended sockets; each anonymous socket on its own) and
//     Config.MaxBytes in total; setWill beyond them fails with
//     LimitExceededError. delaySeconds is checked as a number against
//     Config.MaxDelay before it becomes a duration;
//   - a will is not sent when its user was deleted or may no longer publish
//     to its topic (the Authorizer decides, at send time);
//   - pending delayed wills live in memory: a broker restart drops them
//     (bridge sessions do not survive a restart; MQTT persistent sessions
//     do, see package broker) unless a Store keeps them;
//   - with a Store (cluster mode: the cluster's will store, see
//     Registry.SetStore) every will is also recorded there while it may be
//     sent, and claimed from it before this process sends it, so that when
//     this process dies another one sends it, exactly once; a setWill the
//     store cannot record fails with BrokerError.
//
// Concurrency: every Registry method is safe for concurrent use; wills are
// published from timer goroutines or the caller's goroutine, never while a
// lock is held.
package lwt

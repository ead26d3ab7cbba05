// Package poller tells which of many sockets can be read or written, with
// epoll, so that an idle connection costs no goroutine: a few poller
// goroutines wait in epoll_wait for every registered socket and call the
// socket's handler when it is ready.
//
// A poller's own epoll descriptor is registered with Go's network poller
// (where the runtime allows it), so a poller with nothing to do parks its
// goroutine like any network read instead of holding an OS thread in
// epoll_wait; handlers then run inside that read. The calls that never
// wait (non-blocking read and writev, epoll_wait with a zero timeout,
// epoll_ctl) are raw system calls, which spares the runtime's sysmon
// thread a wake-up each time the process leaves idle (rawsys_linux.go).
//
// Sockets are registered one-shot: after an event the socket is not
// watched again until its owner calls [Watch.Arm], so a handler never runs
// twice at once for the same socket and the owner decides when it wants
// to read again (backpressure) or to be told the socket can be written.
//
// # Concurrency
//
// Handlers run on a poller goroutine and must not block: read what is
// there (non-blocking), hand work that may wait to another goroutine, and
// return. Arm, Close and Add are safe from any goroutine; so are a
// ConnIO's Read and Writev (they allocate nothing per call). A Watch is
// identified by a token, never by its file descriptor, so an event for a
// socket closed meanwhile (whose descriptor number may be reused) is
// dropped instead of reaching the new socket.
package poller

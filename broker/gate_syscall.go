package broker

import (
	"errors"
	"syscall"
)

// SyscallConn exposes the admitted connection's descriptor, so that a
// WebSocket hijacked from the HTTP server can be read without a goroutine
// blocked on it (the bridge's poller).
func (c *gatedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("broker: connection has no descriptor")
	}
	return sc.SyscallConn()
}

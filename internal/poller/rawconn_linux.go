//go:build linux

package poller

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// ConnIO reads and writes a Go net.Conn (a *net.TCPConn, for example one
// hijacked from net/http) without blocking a goroutine: the caller learns
// from a Watch on Fd when to call Read or Writev. Every call goes through
// the connection's syscall.RawConn, so the descriptor stays valid during
// the call even if Close runs concurrently; after Close, calls return
// net.ErrClosed. The net.Conn must stay referenced by the caller (Go
// closes a collected connection's descriptor).
type ConnIO struct {
	c  net.Conn
	rc syscall.RawConn
	fd int
}

// WrapConn returns a ConnIO for c, which must implement syscall.Conn.
func WrapConn(c net.Conn) (*ConnIO, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("poller: %T has no raw descriptor", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	io := &ConnIO{c: c, rc: rc, fd: -1}
	if err := rc.Control(func(fd uintptr) { io.fd = int(fd) }); err != nil {
		return nil, err
	}
	return io, nil
}

// Fd returns the descriptor (for Group.Add).
func (c *ConnIO) Fd() int { return c.fd }

// Conn returns the wrapped connection.
func (c *ConnIO) Conn() net.Conn { return c.c }

// ioOp carries one Read or Writev through RawConn.Control without a
// closure allocated per call: ops are pooled with their functions bound.
type ioOp struct {
	p      []byte
	bufs   [][]byte
	n      int
	err    error
	read   func(fd uintptr)
	write  func(fd uintptr)
	writev func(fd uintptr)
}

var ioOps = sync.Pool{New: func() any {
	o := &ioOp{}
	o.read, o.write, o.writev = o.doRead, o.doWrite, o.doWritev
	return o
}}

func (o *ioOp) doRead(fd uintptr) {
	for {
		o.n, o.err = rawRead(int(fd), o.p)
		if !errors.Is(o.err, unix.EINTR) {
			return
		}
	}
}

func (o *ioOp) doWrite(fd uintptr) {
	for {
		o.n, o.err = rawWrite(int(fd), o.p)
		if !errors.Is(o.err, unix.EINTR) {
			return
		}
	}
}

func (o *ioOp) doWritev(fd uintptr) {
	for {
		o.n, o.err = rawWritev(int(fd), o.bufs)
		if !errors.Is(o.err, unix.EINTR) {
			return
		}
	}
}

func (o *ioOp) release() {
	o.p, o.bufs, o.n, o.err = nil, nil, 0, nil
	ioOps.Put(o)
}

// Read reads what is available: ErrWouldBlock when nothing is, an error
// wrapping io.EOF when the peer has closed.
func (c *ConnIO) Read(p []byte) (int, error) {
	o := ioOps.Get().(*ioOp)
	defer o.release()
	o.p = p
	cerr := c.rc.Control(o.read)
	n, err := o.n, o.err
	switch {
	case cerr != nil:
		return 0, net.ErrClosed
	case err == nil && n == 0 && len(p) > 0:
		return 0, errEOF
	case errors.Is(err, unix.EAGAIN):
		return 0, ErrWouldBlock
	case err != nil:
		return 0, err
	}
	return n, nil
}

// Write writes as much of p as the socket takes now; ErrWouldBlock when it
// took nothing.
func (c *ConnIO) Write(p []byte) (int, error) {
	o := ioOps.Get().(*ioOp)
	defer o.release()
	o.p = p
	cerr := c.rc.Control(o.write)
	n, err := o.n, o.err
	switch {
	case cerr != nil:
		return 0, net.ErrClosed
	case errors.Is(err, unix.EAGAIN):
		return 0, ErrWouldBlock
	case err != nil:
		return 0, err
	}
	return n, nil
}

// Writev writes as much of bufs as the socket takes now; ErrWouldBlock
// when it took nothing.
func (c *ConnIO) Writev(bufs [][]byte) (int, error) {
	o := ioOps.Get().(*ioOp)
	defer o.release()
	o.bufs = bufs
	cerr := c.rc.Control(o.writev)
	n, err := o.n, o.err
	switch {
	case cerr != nil:
		return 0, net.ErrClosed
	case errors.Is(err, unix.EAGAIN):
		return 0, ErrWouldBlock
	case err != nil:
		return 0, err
	}
	return n, nil
}

// CloseWrite shuts the sending side.
func (c *ConnIO) CloseWrite() error {
	if cw, ok := c.c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection.
func (c *ConnIO) Close() error { return c.c.Close() }

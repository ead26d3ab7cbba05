//go:build !linux

package poller

import (
	"errors"
	"net"
)

// Events a handler may be told about.
const (
	Readable = 1 << iota
	Writable
)

// Handler is called when a socket is ready (see the Linux implementation).
type Handler func(events int, buf []byte)

// ErrWouldBlock is returned by Socket reads and writes that would block.
var ErrWouldBlock = errors.New("poller: operation would block")

// Group is unavailable outside Linux.
type Group struct{}

// Watch is unavailable outside Linux.
type Watch struct{}

// Socket is unavailable outside Linux.
type Socket struct{}

// Listener is unavailable outside Linux.
type Listener struct{}

// New reports ErrUnsupported.
func New(n, bufSize int) (*Group, error) { return nil, ErrUnsupported }

// Listen reports ErrUnsupported.
func Listen(string) (*Listener, error) { return nil, ErrUnsupported }

// Add reports ErrUnsupported.
func (g *Group) Add(int, Handler) (*Watch, error) { return nil, ErrUnsupported }

// Close does nothing.
func (g *Group) Close() {}

// Watched returns 0.
func (g *Group) Watched() int { return 0 }

// Arm reports ErrUnsupported.
func (w *Watch) Arm(int) error { return ErrUnsupported }

// Close does nothing.
func (w *Watch) Close() {}

// Fd returns -1.
func (s *Socket) Fd() int { return -1 }

// RemoteAddr returns nil.
func (s *Socket) RemoteAddr() net.Addr { return nil }

// LocalAddr returns nil.
func (s *Socket) LocalAddr() net.Addr { return nil }

// Read reports ErrUnsupported.
func (s *Socket) Read([]byte) (int, error) { return 0, ErrUnsupported }

// Writev reports ErrUnsupported.
func (s *Socket) Writev([][]byte) (int, error) { return 0, ErrUnsupported }

// CloseWrite reports ErrUnsupported.
func (s *Socket) CloseWrite() error { return ErrUnsupported }

// Close does nothing.
func (s *Socket) Close() error { return nil }

// Fd returns -1.
func (l *Listener) Fd() int { return -1 }

// Addr returns nil.
func (l *Listener) Addr() net.Addr { return nil }

// Accept reports ErrUnsupported.
func (l *Listener) Accept() (*Socket, error) { return nil, ErrUnsupported }

// Close does nothing.
func (l *Listener) Close() error { return nil }

// ConnIO is unavailable outside Linux.
type ConnIO struct{}

// WrapConn reports ErrUnsupported.
func WrapConn(net.Conn) (*ConnIO, error) { return nil, ErrUnsupported }

// Fd returns -1.
func (c *ConnIO) Fd() int { return -1 }

// Conn returns nil.
func (c *ConnIO) Conn() net.Conn { return nil }

// Read reports ErrUnsupported.
func (c *ConnIO) Read([]byte) (int, error) { return 0, ErrUnsupported }

// Writev reports ErrUnsupported.
func (c *ConnIO) Writev([][]byte) (int, error) { return 0, ErrUnsupported }

// Write reports ErrUnsupported.
func (c *ConnIO) Write([]byte) (int, error) { return 0, ErrUnsupported }

// CloseWrite reports ErrUnsupported.
func (c *ConnIO) CloseWrite() error { return ErrUnsupported }

// Close does nothing.
func (c *ConnIO) Close() error { return nil }

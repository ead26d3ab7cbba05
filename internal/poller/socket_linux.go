//go:build linux

package poller

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrWouldBlock is returned by Socket reads and writes that would block.
var ErrWouldBlock = errors.New("poller: operation would block")

// Socket is a non-blocking TCP socket accepted by a Listener. It never
// enters Go's network poller: its owner reads and writes it when a Watch
// says it is ready.
type Socket struct {
	fd     int
	remote net.Addr
	local  net.Addr
	// mu keeps the descriptor from being closed (and its number reused
	// by another socket) while a read or write uses it.
	mu     sync.RWMutex
	closed bool
}

// net.ErrClosed is what reads and writes of a closed socket return.
var errClosed = net.ErrClosed

// Fd returns the descriptor (for Group.Add).
func (s *Socket) Fd() int { return s.fd }

// RemoteAddr returns the peer's address.
func (s *Socket) RemoteAddr() net.Addr { return s.remote }

// LocalAddr returns the socket's own address.
func (s *Socket) LocalAddr() net.Addr { return s.local }

// Read reads what is available; it returns ErrWouldBlock when nothing is
// and an error wrapping io.EOF when the peer has closed.
func (s *Socket) Read(p []byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errClosed
	}
	for {
		n, err := rawRead(s.fd, p)
		switch {
		case err == nil && n == 0:
			return 0, errEOF
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, ErrWouldBlock
		default:
			return 0, err
		}
	}
}

// Writev writes as much of bufs as the socket takes now and returns how
// many bytes; ErrWouldBlock when it took nothing.
func (s *Socket) Writev(bufs [][]byte) (int, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return 0, errClosed
	}
	for {
		n, err := rawWritev(s.fd, bufs)
		switch {
		case err == nil:
			return n, nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return 0, ErrWouldBlock
		default:
			return 0, err
		}
	}
}

// CloseWrite shuts the sending side (the peer reads EOF after what was
// sent).
func (s *Socket) CloseWrite() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	return unix.Shutdown(s.fd, unix.SHUT_WR)
}

// Close closes the socket. Safe to call more than once.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return unix.Close(s.fd)
}

var errEOF = eofError{}

type eofError struct{}

func (eofError) Error() string { return "EOF" }
func (eofError) Unwrap() error { return ioEOF }

// Listener accepts non-blocking sockets.
type Listener struct {
	fd   int
	addr net.Addr
	mu   sync.Mutex
	done bool
}

// Listen opens a TCP listener on address (host:port) for sockets that
// bypass Go's network poller.
func Listen(address string) (*Listener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	f, err := ln.(*net.TCPListener).File() // a duplicate of the descriptor
	if err != nil {
		return nil, fmt.Errorf("listener descriptor: %w", err)
	}
	fd, err := unix.Dup(int(f.Fd()))
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("dup: %w", err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &Listener{fd: fd, addr: ln.Addr()}, nil
}

// Fd returns the listener's descriptor (for Group.Add).
func (l *Listener) Fd() int { return l.fd }

// Addr returns the bound address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Accept returns the next pending connection, or ErrWouldBlock when none
// is waiting.
func (l *Listener) Accept() (*Socket, error) {
	for {
		fd, sa, err := unix.Accept4(l.fd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch {
		case err == nil:
			_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
			s := &Socket{fd: fd, remote: tcpAddr(sa), local: l.addr}
			if lsa, err := unix.Getsockname(fd); err == nil {
				s.local = tcpAddr(lsa)
			}
			return s, nil
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.ECONNABORTED):
			continue
		case errors.Is(err, unix.EAGAIN):
			return nil, ErrWouldBlock
		default:
			return nil, err
		}
	}
}

// Close stops listening. Safe to call more than once.
func (l *Listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return nil
	}
	l.done = true
	return unix.Close(l.fd)
}

func tcpAddr(sa unix.Sockaddr) net.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)))
	case *unix.SockaddrInet6:
		return net.TCPAddrFromAddrPort(netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)))
	}
	return &net.TCPAddr{}
}

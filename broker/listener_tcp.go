package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// tcpListener accepts MQTT connections over TCP, optionally TLS.
type tcpListener struct {
	s    *Server
	id   string
	ln   net.Listener
	once sync.Once
	done chan struct{}
}

func listenTCP(s *Server, id, address string, tc *tls.Config) (*tcpListener, error) {
	ln, err := net.Listen("tcp", address)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", address, err)
	}
	// The connection gate comes before TLS, so that a refused client costs
	// no more than its handshake answered with "server busy".
	ln = s.gate.listener(ln, false, answerMQTTBusy(tc, s.refusedBusy))
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	return &tcpListener{s: s, id: id, ln: ln, done: make(chan struct{})}, nil
}

func (l *tcpListener) addr() string { return l.ln.Addr().String() }

// serve accepts connections until close.
func (l *tcpListener) serve() {
	defer close(l.done)
	backoff := 5 * time.Millisecond
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (e.g. EMFILE) back off instead of spinning.
			l.s.log.Warn("accept failed", "listener", l.id, "error", err)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		go l.s.serveConn(nc, l.id)
	}
}

// close stops accepting (established connections are ended by Shutdown).
func (l *tcpListener) close() {
	l.once.Do(func() { _ = l.ln.Close() })
}

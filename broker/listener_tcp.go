package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/sockmq/sockmq/internal/poller"
)

// pollReadSize is each poller goroutine's read buffer: connections read
// into it and keep only an incomplete packet's bytes.
const pollReadSize = 64 << 10

// tcpListener accepts MQTT connections over TCP, optionally TLS. Plain TCP
// connections are driven by a poller (Linux: no goroutine per idle
// connection); TLS connections, every connection where the poller is
// unavailable, and every connection of a cluster node run a reader
// goroutine each. In a cluster a QoS 1/2 publish waits for JetStream and a
// subscribe for the cluster's retained state, and a poller goroutine must
// never wait: it serves many connections.
type tcpListener struct {
	s    *Server
	id   string
	ln   net.Listener
	poll *poller.Group // nil: a goroutine per connection
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
	l := &tcpListener{s: s, id: id, ln: ln, done: make(chan struct{})}
	switch {
	case tc != nil:
		l.ln = tls.NewListener(ln, tc)
	case s.backplane != nil:
		// Cluster node: packet handlers may wait (see tcpListener).
	default:
		if g, err := poller.New(0, pollReadSize); err == nil {
			l.poll = g
		} else if !errors.Is(err, poller.ErrUnsupported) {
			s.log.Warn("no poller: MQTT connections get a goroutine each", "listener", id, "error", err)
		}
	}
	return l, nil
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
		if l.poll != nil && l.s.servePolled(l.poll, &l.s.flush, nc, l.id) {
			continue
		}
		go l.s.serveConn(nc, l.id)
	}
}

// close stops accepting (established connections are ended by Shutdown).
func (l *tcpListener) close() {
	l.once.Do(func() { _ = l.ln.Close() })
}

// closePoller stops the poller once every connection has ended.
func (l *tcpListener) closePoller() {
	if l != nil && l.poll != nil {
		l.poll.Close()
	}
}

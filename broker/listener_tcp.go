package broker

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/listeners"
)

// tcpListener accepts MQTT connections over TCP (optionally TLS). Unlike
// mochi's listener it gives every new connection a read deadline, so a
// connection that never sends CONNECT is closed after the connect timeout;
// mochi replaces the deadline with the keepalive once CONNECT is read.
type tcpListener struct {
	id             string
	address        string
	tlsConfig      *tls.Config
	connectTimeout time.Duration
	onEnd          func(remote string, err error, connected bool)
	closeClients   func(listenerID string)
	gate           *connGate
	onBusy         func() // a refused client was sent CONNACK "server busy"

	mu       sync.Mutex
	ln       net.Listener
	log      *slog.Logger
	closed   bool
	handoffs handoffs
}

var _ listeners.Listener = (*tcpListener)(nil)

func newTCPListener(id, address string, tlsConfig *tls.Config, connectTimeout time.Duration, gate *connGate, onBusy func(), onEnd func(string, error, bool), closeClients func(string)) *tcpListener {
	return &tcpListener{id: id, address: address, tlsConfig: tlsConfig, connectTimeout: connectTimeout, gate: gate, onBusy: onBusy, onEnd: onEnd, closeClients: closeClients}
}

// Init binds the address. Connections are admitted by the connection
// gate before TLS, so that a refused client costs no more than its
// answer.
func (l *tcpListener) Init(log *slog.Logger) error {
	ln, err := net.Listen("tcp", l.address)
	if err != nil {
		return fmt.Errorf("listen %s (%s): %w", l.id, l.address, err)
	}
	if l.gate != nil {
		ln = l.gate.listener(ln, false, answerMQTTBusy(l.tlsConfig, l.onBusy))
	}
	if l.tlsConfig != nil {
		ln = tls.NewListener(ln, l.tlsConfig)
	}
	l.mu.Lock()
	l.ln, l.log = ln, log
	l.mu.Unlock()
	return nil
}

// ID returns the listener id.
func (l *tcpListener) ID() string { return l.id }

// Address returns the bound address (useful with port 0).
func (l *tcpListener) Address() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ln != nil {
		return l.ln.Addr().String()
	}
	return l.address
}

// Protocol returns "tcp" or "tls".
func (l *tcpListener) Protocol() string {
	if l.tlsConfig != nil {
		return "tls"
	}
	return "tcp"
}

// Serve accepts connections until Close.
func (l *tcpListener) Serve(establish listeners.EstablishFn) {
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Temporary failures (e.g. EMFILE) back off instead of spinning.
			l.log.Warn("accept failed", "error", err)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		if l.connectTimeout > 0 {
			_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
		}
		tc := &trackedConn{Conn: conn}
		if !l.handoffs.begin(tc) {
			_ = conn.Close() // shutting down
			continue
		}
		go func() {
			defer l.handoffs.end(tc)
			err := runGuarded(l.log, conn, func() error { return establish(l.id, tc) })
			l.onEnd(conn.RemoteAddr().String(), err, tc.connected.Load())
		}()
	}
}

// Close stops accepting and closes this listener's clients. It uses the
// broker's own closeClients, not mochi's (see Server.closeClientsOf).
func (l *tcpListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.closed = true
	ln := l.ln
	l.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	if l.closeClients != nil {
		l.closeClients(l.id)
	}
	l.handoffs.closeAll()
}

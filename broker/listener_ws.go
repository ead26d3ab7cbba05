package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/mochi-mqtt/server/v2/listeners"
)

// wsWriteTimeout bounds a single WebSocket write, so a client that stops
// reading cannot hold its writer forever.
const wsWriteTimeout = 10 * time.Second

// wsListener serves MQTT over WebSocket as an http.Handler mounted on the
// shared HTTP listener. It is registered with mochi as a listener so that
// Server.Close disconnects its clients like any other.
type wsListener struct {
	id             string
	path           string
	connectTimeout time.Duration
	maxPacket      int64
	onEnd          func(remote string, err error, connected bool)
	closeClients   func(listenerID string)
	upgrader       websocket.Upgrader

	mu        sync.Mutex
	establish listeners.EstablishFn
	closed    bool
	log       *slog.Logger
	handoffs  handoffs
}

var _ listeners.Listener = (*wsListener)(nil)

func newWSListener(id, path string, connectTimeout time.Duration, maxPacket uint32, checkOrigin func(*http.Request) bool, onEnd func(string, error, bool), closeClients func(string)) *wsListener {
	return &wsListener{
		id: id, path: path, connectTimeout: connectTimeout, maxPacket: int64(maxPacket), onEnd: onEnd, closeClients: closeClients,
		upgrader: websocket.Upgrader{
			Subprotocols:    []string{"mqtt"},
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			// A page may open a WebSocket to any address; only the origins
			// the operator allows get through (listeners.http.allowed_origins).
			CheckOrigin: checkOrigin,
		},
	}
}

func (l *wsListener) Init(log *slog.Logger) error { l.log = log; return nil }
func (l *wsListener) ID() string                  { return l.id }
func (l *wsListener) Address() string             { return l.path }
func (l *wsListener) Protocol() string            { return "ws" }

func (l *wsListener) Serve(establish listeners.EstablishFn) {
	l.mu.Lock()
	l.establish = establish
	l.mu.Unlock()
}

// Close closes this listener's clients, with the broker's own
// closeClients (see Server.closeClientsOf).
func (l *wsListener) Close(listeners.CloseFn) {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.closeClients(l.id)
	l.handoffs.closeAll()
}

// ServeHTTP upgrades the request and runs the MQTT session on it. A client
// must offer the "mqtt" subprotocol (MQTT 5.0 section 6.0); others get 400.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	establish, closed := l.establish, l.closed
	l.mu.Unlock()
	if establish == nil || closed {
		http.Error(w, "broker not accepting connections", http.StatusServiceUnavailable)
		return
	}
	if !offersMQTT(r) {
		http.Error(w, `MQTT over WebSocket requires the "mqtt" subprotocol`, http.StatusBadRequest)
		return
	}
	c, err := l.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // the upgrader already answered with an HTTP error
	}
	if l.maxPacket > 0 {
		// A frame may carry several packets, but never more than a few max
		// size packets' worth; this bounds memory before mochi sees bytes.
		c.SetReadLimit(l.maxPacket + 16)
	}
	conn := &wsConn{Conn: c.UnderlyingConn(), ws: c}
	if l.connectTimeout > 0 {
		_ = conn.SetDeadline(time.Now().Add(l.connectTimeout))
	}
	tc := &trackedConn{Conn: conn}
	if !l.handoffs.begin(tc) {
		conn.closeWith(websocket.CloseGoingAway) // shutting down
		return
	}
	defer l.handoffs.end(tc)
	err = runGuarded(l.log, conn, func() error { return establish(l.id, tc) })
	conn.closeWith(websocket.CloseNormalClosure)
	l.onEnd(conn.RemoteAddr().String(), err, tc.connected.Load())
}

func offersMQTT(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == "mqtt" {
			return true
		}
	}
	return false
}

// wsConn adapts a WebSocket connection to the byte stream mochi reads and
// writes. Reads span binary frames; each Write is one binary frame.
type wsConn struct {
	net.Conn // the raw connection: addresses and read deadlines
	ws       *websocket.Conn

	rmu sync.Mutex
	r   io.Reader

	wmu       sync.Mutex
	closeOnce sync.Once
	closed    atomic.Bool
}

var errTextFrame = errors.New("websocket: MQTT requires binary frames, got a text frame")

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.r == nil {
			mt, r, err := c.ws.NextReader()
			if err != nil {
				return 0, err
			}
			if mt != websocket.BinaryMessage {
				return 0, errTextFrame
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if errors.Is(err, io.EOF) {
			c.r = nil
			if n > 0 {
				return n, nil
			}
			continue
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed.Load() {
		return 0, net.ErrClosed
	}
	_ = c.ws.SetWriteDeadline(time.Now().Add(wsWriteTimeout))
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// SetDeadline only sets the read deadline: writes get their own deadline per
// frame, because gorilla resets the write deadline on every write.
func (c *wsConn) SetDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

func (c *wsConn) Close() error {
	c.closeWith(websocket.CloseNormalClosure)
	return nil
}

// closeWith sends a close frame (best effort) and closes the connection.
// gorilla allows WriteControl and Close concurrently with a blocked Write, so
// closing never waits for a slow writer.
func (c *wsConn) closeWith(code int) {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		msg := websocket.FormatCloseMessage(code, "")
		_ = c.ws.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		_ = c.ws.Close()
	})
}

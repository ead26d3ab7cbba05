package broker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

// wsWriteTimeout bounds a single WebSocket write, so a client that stops
// reading cannot hold its writer forever.
const wsWriteTimeout = 10 * time.Second

// wsListener serves MQTT over WebSocket as an http.Handler mounted on the
// shared HTTP listener.
type wsListener struct {
	s        *Server
	id       string
	upgrader websocket.Upgrader
	closed   atomic.Bool
}

func newWSListener(s *Server, id string) *wsListener {
	return &wsListener{
		s: s, id: id,
		upgrader: websocket.Upgrader{
			Subprotocols:    []string{"mqtt"},
			ReadBufferSize:  4096,
			WriteBufferSize: 4096,
			// A page may open a WebSocket to any address; only the origins
			// the operator allows get through (listeners.http.allowed_origins).
			CheckOrigin: s.checkOrigin,
		},
	}
}

func (l *wsListener) close() { l.closed.Store(true) }

// ServeHTTP upgrades the request and runs the MQTT session on it. A client
// must offer the "mqtt" subprotocol (MQTT 5.0 section 6.0); others get 400.
func (l *wsListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if l.closed.Load() || !l.s.running.Load() {
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
	if max := l.s.cfg.Limits.MaxPacketSize; max > 0 {
		// A frame may carry several packets, but never more than a few max
		// size packets' worth; this bounds memory before MQTT framing.
		c.SetReadLimit(int64(max) + 16)
	}
	conn := &wsConn{Conn: c.UnderlyingConn(), ws: c}
	l.s.serveConn(conn, l.id)
	conn.closeWith(websocket.CloseNormalClosure)
}

func offersMQTT(r *http.Request) bool {
	for _, p := range websocket.Subprotocols(r) {
		if p == "mqtt" {
			return true
		}
	}
	return false
}

// wsConn adapts a WebSocket connection to the byte stream MQTT is read
// from and written to. Reads span binary frames; each Write is one binary
// frame.
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

// SetReadDeadline sets the WebSocket read deadline.
func (c *wsConn) SetReadDeadline(t time.Time) error { return c.ws.SetReadDeadline(t) }

// SetWriteDeadline is a no-op: each frame gets its own deadline.
func (c *wsConn) SetWriteDeadline(time.Time) error { return nil }

// Close sends a normal close frame (best effort) and closes the connection.
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

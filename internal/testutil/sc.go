package testutil

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/internal/scproto"
)

// SCClient is a raw SocketCluster client for tests: it speaks frames
// directly, answers pings (unless told not to), and records every packet.
type SCClient struct {
	t      testing.TB
	conn   *websocket.Conn
	wmu    sync.Mutex
	cid    int64
	noPong bool // when set, pings are not answered
	pongV1 bool // answer "#1" with "#2" (else "" with "")

	mu      sync.Mutex
	packets []scproto.Packet
	taken   []bool
	raws    []string // every text message, in order
	batches int
	closeCd int // close code once closed (1006 without a close frame)
	closeTx string
	done    chan struct{}
	gate    chan struct{} // when set, the reader stops until it is closed
}

// PauseReader stops reading from the socket after the current message, so
// that the server's writes pile up (a client that cannot keep up).
func PauseReader(c *SCClient) chan struct{} {
	g := make(chan struct{})
	c.mu.Lock()
	c.gate = g
	c.mu.Unlock()
	return g
}

// DialSC opens a SocketCluster socket to url without handshaking.
func DialSC(t testing.TB, u string, hdr http.Header, opts ...func(*SCClient)) *SCClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(u, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	c := &SCClient{t: t, conn: conn, done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	go c.readLoop()
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

// NoPong makes the client stop answering pings.
func NoPong(c *SCClient) { c.noPong = true }

// PongV1 makes the client answer protocol v1 pings ("#1" with "#2").
func PongV1(c *SCClient) { c.pongV1 = true }

func (c *SCClient) readLoop() {
	defer close(c.done)
	for {
		c.mu.Lock()
		g := c.gate
		c.mu.Unlock()
		if g != nil {
			<-g
		}
		_, b, err := c.conn.ReadMessage()
		if err != nil {
			c.mu.Lock()
			c.closeCd = 1006
			if ce, ok := err.(*websocket.CloseError); ok {
				c.closeCd, c.closeTx = ce.Code, ce.Text
			}
			c.mu.Unlock()
			return
		}
		s := string(b)
		c.mu.Lock()
		c.raws = append(c.raws, s)
		c.mu.Unlock()
		f := scproto.Decode(b)
		switch f.Kind {
		case scproto.KindEmpty:
			if !c.noPong && !c.pongV1 {
				c.Send("")
			}
		case scproto.KindPingV1:
			if !c.noPong && c.pongV1 {
				c.Send("#2")
			}
		case scproto.KindPackets:
			c.mu.Lock()
			if f.Batch {
				c.batches++
			}
			for _, p := range f.Packets {
				c.packets = append(c.packets, p)
				c.taken = append(c.taken, false)
			}
			c.mu.Unlock()
		}
	}
}

// Send writes one text frame.
func (c *SCClient) Send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

// SendFrame writes one message of type mt (websocket.TextMessage or
// BinaryMessage) with arbitrary bytes, valid UTF-8 or not.
func (c *SCClient) SendFrame(mt int, b []byte) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.conn.WriteMessage(mt, b)
}

// MustJSON returns v as JSON text; a string is taken to be JSON already.
func MustJSON(v any) string {
	if s, ok := v.(string); ok {
		return s // already JSON
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// Quote returns s as a JSON string literal.
func Quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// Transmit sends {"event":ev,"data":data}; data is JSON text or a value.
func (c *SCClient) Transmit(ev string, data any) {
	c.Send(fmt.Sprintf(`{"event":%q,"data":%s}`, ev, MustJSON(data)))
}

// Call sends an invoke and returns its cid.
func (c *SCClient) Call(ev string, data any) int64 {
	c.mu.Lock()
	c.cid++
	cid := c.cid
	c.mu.Unlock()
	c.Send(fmt.Sprintf(`{"event":%q,"data":%s,"cid":%d}`, ev, MustJSON(data), cid))
	return cid
}

// Invoke calls and waits for the response.
func (c *SCClient) Invoke(ev string, data any) scproto.Packet {
	c.t.Helper()
	cid := c.Call(ev, data)
	return c.Next(func(p scproto.Packet) bool { return p.HasRID && p.RID == cid }, fmt.Sprintf("response to %s (cid %d)", ev, cid))
}

// Handshake sends #handshake with token (nil for none) and returns the
// reply data.
func (c *SCClient) Handshake(token *string) map[string]any {
	c.t.Helper()
	tok := "null"
	if token != nil {
		tok = Quote(*token)
	}
	r := c.Invoke("#handshake", `{"authToken":`+tok+`}`)
	if r.Error != nil {
		c.t.Fatalf("handshake failed: %s", r.Error)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Data, &m); err != nil {
		c.t.Fatalf("handshake reply %s: %v", r.Data, err)
	}
	return m
}

// Next waits for the first packet (not yet taken) matching pred.
func (c *SCClient) Next(pred func(scproto.Packet) bool, what string) scproto.Packet {
	c.t.Helper()
	p, ok := c.TryNext(pred, 5*time.Second)
	if !ok {
		c.mu.Lock()
		var short []string
		for _, r := range c.raws[max(0, len(c.raws)-20):] {
			if len(r) > 200 {
				r = r[:200] + "..."
			}
			short = append(short, r)
		}
		raws := strings.Join(short, "\n  ")
		c.mu.Unlock()
		c.t.Fatalf("timed out waiting for %s; last frames received:\n  %s", what, raws)
	}
	return p
}

// TryNext is Next without failing: it reports whether a packet came in time.
func (c *SCClient) TryNext(pred func(scproto.Packet) bool, timeout time.Duration) (scproto.Packet, bool) {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		for i, p := range c.packets {
			if !c.taken[i] && pred(p) {
				c.taken[i] = true
				c.mu.Unlock()
				return p, true
			}
		}
		c.mu.Unlock()
		if time.Now().After(deadline) {
			return scproto.Packet{}, false
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Count returns how many received packets match pred (taken or not).
func (c *SCClient) Count(pred func(scproto.Packet) bool) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, p := range c.packets {
		if pred(p) {
			n++
		}
	}
	return n
}

// IsEvent matches packets of event ev.
func IsEvent(ev string) func(scproto.Packet) bool {
	return func(p scproto.Packet) bool { return p.Event == ev }
}

// SCPub is a decoded #publish push.
type SCPub struct {
	Channel string `json:"channel"`
	// Topic is the concrete topic of a push on a wildcard channel (from the
	// envelope); empty on exact channels.
	Topic string `json:"-"`
	// Data is the message: on wildcard channels, the envelope's data.
	Data json.RawMessage `json:"data"`
	// Raw is the push's data member as sent (the envelope on wildcard
	// channels).
	Raw json.RawMessage `json:"-"`
}

// AsPub decodes the data of a #publish push. On a wildcard channel the
// bridge wraps each message as {"topic","data"}; AsPub unwraps it into
// Topic and Data.
func AsPub(p scproto.Packet) SCPub {
	var x SCPub
	_ = json.Unmarshal(p.Data, &x)
	x.Raw = x.Data
	if strings.ContainsAny(x.Channel, "+#") {
		var env struct {
			Topic string          `json:"topic"`
			Data  json.RawMessage `json:"data"`
		}
		if json.Unmarshal(x.Data, &env) == nil {
			x.Topic, x.Data = env.Topic, env.Data
		}
	}
	return x
}

// NextPub waits for a push on channel.
func (c *SCClient) NextPub(channel string) SCPub {
	c.t.Helper()
	p := c.Next(func(p scproto.Packet) bool { return p.Event == "#publish" && AsPub(p).Channel == channel }, "#publish on "+channel)
	return AsPub(p)
}

// WaitClose waits for the socket to close and returns the close code.
func (c *SCClient) WaitClose() (int, string) {
	c.t.Helper()
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.t.Fatal("socket not closed within 10s")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeCd, c.closeTx
}

// ErrName returns the error name of a response, or "".
func ErrName(p scproto.Packet) string {
	var e struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(p.Error, &e)
	return e.Name
}

// Subscribe subscribes and fails the test unless it is acknowledged.
func (c *SCClient) Subscribe(channel string) {
	c.t.Helper()
	if r := c.Invoke("#subscribe", map[string]any{"channel": channel}); r.Error != nil {
		c.t.Fatalf("subscribe %s: %s", channel, r.Error)
	}
}

// Conn returns the underlying WebSocket connection.
func (c *SCClient) Conn() *websocket.Conn { return c.conn }

// Raws returns every text message received so far, in order.
func (c *SCClient) Raws() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.raws...)
}

// Batches returns how many received frames were JSON arrays.
func (c *SCClient) Batches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.batches
}

// Packets returns every packet received so far, taken or not.
func (c *SCClient) Packets() []scproto.Packet {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]scproto.Packet(nil), c.packets...)
}

// SCURL is the bridge URL on an HTTP listener address.
func SCURL(httpAddr string) string { return "ws://" + httpAddr + "/socketcluster/" }

// Login invokes the bridge's login procedure and returns the token it
// sends with #setAuthToken.
func (c *SCClient) Login(user, password string) string {
	c.t.Helper()
	r := c.Invoke("login", map[string]string{"username": user, "password": password})
	if r.Error != nil {
		c.t.Fatalf("login %s: %s", user, r.Error)
	}
	p := c.Next(IsEvent("#setAuthToken"), "#setAuthToken")
	var d struct {
		Token string `json:"token"`
	}
	_ = json.Unmarshal(p.Data, &d)
	return d.Token
}

// Closed reports whether the socket has closed.
func (c *SCClient) Closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// brokerAdapter and authAdapter are the same small adapters cmd/sockmq
// uses: the bridge never imports broker or auth.
type brokerAdapter struct{ s *broker.Server }

func (a brokerAdapter) Publish(m bridge.Message) error { return a.s.Publish(broker.Message(m)) }
func (a brokerAdapter) Subscribe(filter string, fn func(bridge.Message)) (func(), error) {
	return a.s.Subscribe(filter, func(m broker.Message) { fn(bridge.Message(m)) })
}
func (a brokerAdapter) Retained(filter string) []bridge.Message {
	ms := a.s.Retained(filter)
	out := make([]bridge.Message, len(ms))
	for i, m := range ms {
		out[i] = bridge.Message(m)
	}
	return out
}

type authAdapter struct{ s *auth.Service }

func (a authAdapter) Authenticate(u string, pw []byte, hasU, hasP bool) bridge.AuthResult {
	return bridge.AuthResult(a.s.Authenticate(u, pw, hasU, hasP))
}
func (a authAdapter) Allowed(id bridge.Identity, topic string, acc bridge.Access) bool {
	return a.s.Allowed(auth.Identity(id), topic, auth.Access(acc))
}
func (a authAdapter) Subscription(id bridge.Identity, filter string) bridge.SubDecision {
	return bridge.SubDecision(a.s.Subscription(auth.Identity(id), filter))
}
func (a authAdapter) UserExists(u string) bool { return a.s.UserExists(u) }
func (a authAdapter) AnonymousAllowed() bool   { return a.s.AnonymousAllowed() }
func (a authAdapter) OnReload(fn func())       { a.s.OnReload(fn) }

// stack is a running broker with the bridge mounted on its HTTP listener.
type stack struct {
	t      *testing.T
	b      *broker.Server
	h      *bridge.Handler
	reg    *prometheus.Registry
	auth   *auth.Service
	dir    string
	closed []bridge.CloseInfo
	obs    *recorder
}

// recorder is an Observer that records what it is told.
type recorder struct {
	mu     sync.Mutex
	opened []string
	closed map[string]bridge.CloseInfo
}

func (r *recorder) SocketOpened(s *bridge.Session) {
	r.mu.Lock()
	r.opened = append(r.opened, s.ID())
	r.mu.Unlock()
}

func (r *recorder) SocketClosed(s *bridge.Session, info bridge.CloseInfo) {
	r.mu.Lock()
	if r.closed == nil {
		r.closed = map[string]bridge.CloseInfo{}
	}
	if _, dup := r.closed[s.ID()]; dup {
		panic("SocketClosed twice for " + s.ID())
	}
	r.closed[s.ID()] = info
	r.mu.Unlock()
}

func (r *recorder) closeOf(id string) (bridge.CloseInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.closed[id]
	return c, ok
}

// testConfig is the bridge configuration tests start from: fast timeouts.
func testConfig() bridge.Config {
	c := bridge.Defaults()
	c.PingInterval = time.Second
	c.PingTimeout = 5 * time.Second
	c.HandshakeTimeout = 5 * time.Second
	c.WriteTimeout = 2 * time.Second
	return c
}

// startStack starts a broker and the bridge. authz may be nil.
func startStack(t *testing.T, cfg bridge.Config, authz *auth.Service) *stack {
	t.Helper()
	st := &stack{t: t, reg: prometheus.NewRegistry(), auth: authz, obs: &recorder{}}
	bcfg := testutil.BrokerConfig(t)
	st.dir = bcfg.Persistence.DataDir
	var ba broker.Authorizer
	var opts bridge.Options
	if authz != nil {
		ba = authz
		opts.Authorizer = authAdapter{authz}
	}
	b, err := broker.New(bcfg, ba, st.reg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	opts.Broker = brokerAdapter{b}
	opts.Registerer = st.reg
	opts.DataDir = st.dir
	opts.Observer = st.obs
	h, err := bridge.New(cfg, opts, testutil.Logger(t))
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	for _, p := range h.Paths() {
		b.Handle(p, h)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	st.b, st.h = b, h
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("bridge.Shutdown: %v", err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("broker.Shutdown: %v", err)
		}
	})
	return st
}

// counter reads a counter or gauge from the stack's registry.
func (st *stack) metric(name string) float64 {
	mfs, err := st.reg.Gather()
	if err != nil {
		st.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += metricValue(m)
		}
		return sum
	}
	st.t.Fatalf("metric %s not registered", name)
	return 0
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// scClient is a raw SocketCluster client: it speaks frames directly.
type scClient struct {
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

// pauseReader stops reading from the socket after the current message, so
// that the server's writes pile up (a client that cannot keep up).
func pauseReader(c *scClient) chan struct{} {
	g := make(chan struct{})
	c.mu.Lock()
	c.gate = g
	c.mu.Unlock()
	return g
}

// dial opens a socket to the stack's bridge without handshaking.
func (st *stack) dial(t testing.TB, opts ...func(*scClient)) *scClient {
	t.Helper()
	return dialURL(t, "ws://"+st.b.HTTPAddr()+"/socketcluster/", nil, opts...)
}

func dialURL(t testing.TB, u string, hdr http.Header, opts ...func(*scClient)) *scClient {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, resp, err := d.Dial(u, hdr)
	if err != nil {
		t.Fatalf("dial %s: %v (%v)", u, err, resp)
	}
	c := &scClient{t: t, conn: conn, done: make(chan struct{})}
	for _, o := range opts {
		o(c)
	}
	go c.readLoop()
	t.Cleanup(func() { _ = conn.Close() })
	return c
}

func noPong(c *scClient) { c.noPong = true }
func pongV1(c *scClient) { c.pongV1 = true }

func (c *scClient) readLoop() {
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
				c.send("")
			}
		case scproto.KindPingV1:
			if !c.noPong && c.pongV1 {
				c.send("#2")
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

func (c *scClient) send(s string) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_ = c.conn.WriteMessage(websocket.TextMessage, []byte(s))
}

func mustJSON(v any) string {
	if s, ok := v.(string); ok {
		return s // already JSON
	}
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// quote returns s as a JSON string literal.
func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// transmit sends {"event":ev,"data":data}; data is JSON text or a value.
func (c *scClient) transmit(ev string, data any) {
	c.send(fmt.Sprintf(`{"event":%q,"data":%s}`, ev, mustJSON(data)))
}

// call sends an invoke and returns its cid.
func (c *scClient) call(ev string, data any) int64 {
	c.mu.Lock()
	c.cid++
	cid := c.cid
	c.mu.Unlock()
	c.send(fmt.Sprintf(`{"event":%q,"data":%s,"cid":%d}`, ev, mustJSON(data), cid))
	return cid
}

// invoke calls and waits for the response.
func (c *scClient) invoke(ev string, data any) scproto.Packet {
	c.t.Helper()
	cid := c.call(ev, data)
	return c.next(func(p scproto.Packet) bool { return p.HasRID && p.RID == cid }, fmt.Sprintf("response to %s (cid %d)", ev, cid))
}

// handshake sends #handshake with token (nil for none) and returns the
// reply data.
func (c *scClient) handshake(token *string) map[string]any {
	c.t.Helper()
	tok := "null"
	if token != nil {
		tok = quote(*token)
	}
	r := c.invoke("#handshake", `{"authToken":`+tok+`}`)
	if r.Error != nil {
		c.t.Fatalf("handshake failed: %s", r.Error)
	}
	var m map[string]any
	if err := json.Unmarshal(r.Data, &m); err != nil {
		c.t.Fatalf("handshake reply %s: %v", r.Data, err)
	}
	return m
}

// next waits for the first packet (not yet taken) matching pred.
func (c *scClient) next(pred func(scproto.Packet) bool, what string) scproto.Packet {
	c.t.Helper()
	p, ok := c.tryNext(pred, 5*time.Second)
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

func (c *scClient) tryNext(pred func(scproto.Packet) bool, timeout time.Duration) (scproto.Packet, bool) {
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

// count returns how many received packets match pred (taken or not).
func (c *scClient) count(pred func(scproto.Packet) bool) int {
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

func isEvent(ev string) func(scproto.Packet) bool {
	return func(p scproto.Packet) bool { return p.Event == ev }
}

// pub is a decoded #publish push.
type pub struct {
	Channel string          `json:"channel"`
	Topic   string          `json:"topic"`
	Data    json.RawMessage `json:"data"`
}

func asPub(p scproto.Packet) pub {
	var x pub
	_ = json.Unmarshal(p.Data, &x)
	return x
}

// nextPub waits for a push on channel.
func (c *scClient) nextPub(channel string) pub {
	c.t.Helper()
	p := c.next(func(p scproto.Packet) bool { return p.Event == "#publish" && asPub(p).Channel == channel }, "#publish on "+channel)
	return asPub(p)
}

// waitClose waits for the socket to close and returns the close code.
func (c *scClient) waitClose() (int, string) {
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

// errName returns the error name of a response, or "".
func errName(p scproto.Packet) string {
	var e struct {
		Name    string `json:"name"`
		Message string `json:"message"`
	}
	_ = json.Unmarshal(p.Error, &e)
	return e.Name
}

// subscribe subscribes and fails the test unless it is acknowledged.
func (c *scClient) subscribe(channel string) {
	c.t.Helper()
	if r := c.invoke("#subscribe", map[string]any{"channel": channel}); r.Error != nil {
		c.t.Fatalf("subscribe %s: %s", channel, r.Error)
	}
}

// connect dials and handshakes.
func (st *stack) connect(t testing.TB, opts ...func(*scClient)) *scClient {
	t.Helper()
	c := st.dial(t, opts...)
	c.handshake(nil)
	return c
}

// writeFile writes content to dir/name.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// passwd returns password-file content for users (name → password).
func passwd(t testing.TB, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		h, err := auth.HashPassword(pw, 1)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return b.String()
}

var _ = url.URL{}

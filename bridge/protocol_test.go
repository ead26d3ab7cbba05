package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

func TestHandshakeReply(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.dial(t)
	cid := c.Call("#handshake", `{"authToken":null}`)
	r := c.Next(func(p scproto.Packet) bool { return p.HasRID }, "handshake reply")
	if r.RID != cid {
		t.Fatalf("rid %d, want %d", r.RID, cid)
	}
	var d struct {
		ID              *string `json:"id"`
		PingTimeout     *int64  `json:"pingTimeout"`
		IsAuthenticated *bool   `json:"isAuthenticated"`
	}
	if err := json.Unmarshal(r.Data, &d); err != nil || d.ID == nil || d.PingTimeout == nil || d.IsAuthenticated == nil {
		t.Fatalf("handshake reply %s lacks id, pingTimeout or isAuthenticated", r.Data)
	}
	if len(*d.ID) != 21 || (*d.ID)[0] != '$' || strings.Trim((*d.ID)[1:], "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") != "" {
		t.Errorf("socket id %q is not $ and 20 URL-safe characters", *d.ID)
	}
	if *d.PingTimeout != 5000 || *d.IsAuthenticated {
		t.Errorf("handshake reply %s", r.Data)
	}
	// The observer heard about it, with the same id.
	testutil.WaitFor(t, 2*time.Second, func() bool {
		st.obs.mu.Lock()
		defer st.obs.mu.Unlock()
		return len(st.obs.opened) == 1 && st.obs.opened[0] == *d.ID
	}, "SocketOpened")
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.metric("sockmq_bridge_sockets_connected") == 1 }, "sockets gauge 1")
	// A clean client close is reported as clean.
	_ = c.Conn().WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"))
	c.WaitClose()
	testutil.WaitFor(t, 2*time.Second, func() bool { _, ok := st.obs.closeOf(*d.ID); return ok }, "SocketClosed")
	if info, _ := st.obs.closeOf(*d.ID); info.Code != 1000 || !info.Clean {
		t.Errorf("close info %+v, want 1000 clean", info)
	}
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.metric("sockmq_bridge_sockets_connected") == 0 }, "sockets gauge 0")
}

func TestHandshakeErrors(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 200 * time.Millisecond
	st := startStack(t, cfg, nil)
	cases := []struct {
		name string
		send []string
		code int
	}{
		{"message before handshake", []string{`{"event":"#subscribe","data":{"channel":"a"},"cid":1}`}, bridge.CloseMessageBeforeHandshake},
		{"pong before handshake", []string{``}, bridge.CloseMessageBeforeHandshake},
		{"garbage before handshake", []string{`hello`}, bridge.CloseMessageBeforeHandshake},
		{"handshake without cid", []string{`{"event":"#handshake","data":{"authToken":null}}`}, bridge.CloseBadHandshake},
		{"no handshake", nil, bridge.CloseHandshakeTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := st.dial(t)
			for _, s := range tc.send {
				c.Send(s)
			}
			if code, _ := c.WaitClose(); code != tc.code {
				t.Fatalf("closed with %d, want %d", code, tc.code)
			}
		})
	}
	// The client sees the close before the server's bookkeeping is done.
	testutil.WaitFor(t, 5*time.Second, func() bool {
		return st.metric("sockmq_bridge_sockets_refused_total") == float64(len(cases))
	}, fmt.Sprintf("sockmq_bridge_sockets_refused_total to reach %d", len(cases)))
}

func TestGarbageAfterHandshakeIsIgnored(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.connect(t)
	c.Send(`not json`)
	c.Send(`{"event":`)
	c.Send(`[1,2,"x"]`)
	c.Send(`#1`)
	c.Send(`{"rid":99,"data":1}`) // a response to nothing
	c.Send(`{"event":"#disconnect","data":{"code":1000}}`)
	if r := c.Invoke("#subscribe", map[string]any{"channel": "still/alive"}); r.Error != nil {
		t.Fatalf("socket unusable after garbage: %s", r.Error)
	}
}

func TestFrameTooBig(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFrameSize = 1024
	st := startStack(t, cfg, nil)
	c := st.connect(t)
	c.Transmit("x", `"`+strings.Repeat("a", 2000)+`"`)
	if code, _ := c.WaitClose(); code != websocket.CloseMessageTooBig {
		t.Fatalf("closed with %d, want 1009", code)
	}
}

func TestUnknownAndReservedEvents(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.connect(t)
	c.Transmit("nobodyListens", 1) // dropped silently
	if r := c.Invoke("nobodyListens", 1); testutil.ErrName(r) != bridge.ErrNameUnknownProcedure {
		t.Errorf("unknown procedure: %s", r.Error)
	}
	if r := c.Invoke("#kickOut", 1); testutil.ErrName(r) != bridge.ErrNameInvalidAction {
		t.Errorf("reserved event: %s", r.Error)
	}
	if r := c.Invoke("#handshake", `{}`); testutil.ErrName(r) != bridge.ErrNameInvalidAction {
		t.Errorf("second handshake: %s", r.Error)
	}
	if r := c.Invoke("#subscribe", 5); testutil.ErrName(r) != bridge.ErrNameInvalidAction {
		t.Errorf("malformed subscribe: %s", r.Error)
	}
	if r := c.Invoke("#publish", `"x"`); testutil.ErrName(r) != bridge.ErrNameInvalidAction {
		t.Errorf("malformed publish: %s", r.Error)
	}
	if r := c.Invoke("#authenticate", `"garbage"`); testutil.ErrName(r) != bridge.ErrNameTokenInvalid {
		t.Errorf("garbage token: %s", r.Error)
	}
	c.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken after a bad token")
	// #authenticate without a cid is a protocol violation.
	c.Transmit("#authenticate", `"x"`)
	if code, _ := c.WaitClose(); code != bridge.CloseBadHandshake {
		t.Fatalf("closed with %d, want 4008", code)
	}
}

func TestPingTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 50 * time.Millisecond
	cfg.PingTimeout = 300 * time.Millisecond
	st := startStack(t, cfg, nil)
	c := st.dial(t, testutil.NoPong)
	id := c.Handshake(nil)["id"].(string)
	if code, _ := c.WaitClose(); code != bridge.ClosePongTimeout {
		t.Fatalf("closed with %d, want 4001", code)
	}
	testutil.WaitFor(t, 2*time.Second, func() bool { _, ok := st.obs.closeOf(id); return ok }, "SocketClosed")
	if info, _ := st.obs.closeOf(id); info.Code != bridge.ClosePongTimeout || info.Clean {
		t.Errorf("close info %+v", info)
	}

	// A client that answers stays up well past the timeout.
	alive := st.connect(t)
	other := st.dial(t, testutil.NoPong)
	other.Handshake(nil)
	other.WaitClose()
	if alive.Closed() {
		t.Fatal("answering client was closed")
	}
}

func pings(c *scClient) (v2, v1 int) {
	for _, r := range c.Raws() {
		switch r {
		case "":
			v2++
		case "#1":
			v1++
		}
	}
	return
}

func TestPingVersionDetection(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 30 * time.Millisecond
	cfg.PingTimeout = 2 * time.Second
	st := startStack(t, cfg, nil)

	v2 := st.connect(t)
	v1 := st.connect(t, testutil.PongV1)
	// Before the first pong both pings go out; after it, only the
	// detected one.
	testutil.WaitFor(t, 2*time.Second, func() bool { a, _ := pings(v2); return a >= 5 }, "v2 pings")
	testutil.WaitFor(t, 2*time.Second, func() bool { _, b := pings(v1); return b >= 5 }, "v1 pings")
	a2, b2 := pings(v2)
	a1, b1 := pings(v1)
	testutil.WaitFor(t, 2*time.Second, func() bool { a, _ := pings(v2); _, b := pings(v1); return a >= a2+5 && b >= b1+5 }, "more pings")
	if _, b := pings(v2); b > b2+1 {
		t.Errorf("v2 socket still gets #1 pings after its first pong (%d -> %d)", b2, b)
	}
	if a, _ := pings(v1); a > a1+1 {
		t.Errorf("v1 socket still gets empty pings after its first pong (%d -> %d)", a1, a)
	}

	// A fixed protocol version pings only that way from the start.
	cfg.ProtocolVersion = "1"
	st1 := startStack(t, cfg, nil)
	c := st1.connect(t, testutil.PongV1)
	testutil.WaitFor(t, 2*time.Second, func() bool { _, b := pings(c); return b >= 3 }, "v1 pings")
	if a, _ := pings(c); a != 0 {
		t.Errorf("protocol_version 1 sent %d empty pings", a)
	}
}

func TestBatchesBothWays(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.connect(t)
	c.Send(`[{"event":"#subscribe","data":{"channel":"b/1"},"cid":10},{"event":"#subscribe","data":"b/2","cid":11},{"event":"#publish","data":{"channel":"b/1","data":1}},{"event":"#publish","data":{"channel":"b/2","data":2},"cid":12}]`)
	for _, cid := range []int64{10, 11, 12} {
		r := c.Next(func(p scproto.Packet) bool { return p.RID == cid }, "ack")
		if r.Error != nil {
			t.Fatalf("cid %d: %s", cid, r.Error)
		}
	}
	if p := c.NextPub("b/1"); string(p.Data) != "1" {
		t.Errorf("b/1 got %s", p.Data)
	}
	if p := c.NextPub("b/2"); string(p.Data) != "2" {
		t.Errorf("b/2 got %s", p.Data)
	}
	// login queues its reply and #setAuthToken together: one array frame.
	c.Invoke("login", map[string]string{"username": "u", "password": "p"})
	c.Next(testutil.IsEvent("#setAuthToken"), "#setAuthToken")
	batches := c.Batches()
	if batches == 0 {
		t.Error("no batch (JSON array) frame received")
	}
}

func TestProcedures(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	for _, name := range []string{"login", "logout", "#x", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("procedure %q could be registered", name)
				}
			}()
			st.h.RegisterProcedure(name, func(context.Context, *bridge.Session, json.RawMessage) (any, error) { return nil, nil })
		}()
	}
	st.h.RegisterProcedure("echo", func(_ context.Context, s *bridge.Session, data json.RawMessage) (any, error) {
		return map[string]any{"id": s.ID(), "data": data, "user": s.Username(), "remote": s.Remote() != "", "since": !s.ConnectedAt().IsZero()}, nil
	})
	st.h.RegisterProcedure("named", func(context.Context, *bridge.Session, json.RawMessage) (any, error) {
		return nil, &bridge.Error{Name: "BadCustomError", Message: "custom failure", Fields: map[string]any{"extra": 42}}
	})
	st.h.RegisterProcedure("plain", func(context.Context, *bridge.Session, json.RawMessage) (any, error) {
		return nil, context.DeadlineExceeded
	})
	st.h.RegisterProcedure("nothing", func(context.Context, *bridge.Session, json.RawMessage) (any, error) { return nil, nil })
	c := st.dial(t)
	id := c.Handshake(nil)["id"].(string)
	r := c.Invoke("echo", `{"a":[1,2]}`)
	var got map[string]any
	_ = json.Unmarshal(r.Data, &got)
	if got["id"] != id || got["user"] != "" || got["remote"] != true || got["since"] != true || testutil.MustJSON(got["data"]) != `{"a":[1,2]}` {
		t.Errorf("echo returned %s", r.Data)
	}
	r = c.Invoke("named", nil)
	if string(r.Error) != `{"name":"BadCustomError","message":"custom failure","extra":42}` {
		t.Errorf("named error: %s", r.Error)
	}
	if r = c.Invoke("plain", nil); testutil.ErrName(r) != bridge.ErrNameInternal || strings.Contains(string(r.Error), "deadline") {
		t.Errorf("plain error leaked or misnamed: %s", r.Error)
	}
	if r = c.Invoke("nothing", nil); r.Error != nil || r.Data != nil {
		t.Errorf("nil result: %+v", r)
	}
}

func TestOriginAllowList(t *testing.T) {
	cfg := testConfig()
	cfg.AllowedOrigins = []string{"https://good.example"}
	st := startStack(t, cfg, nil)
	u := "ws://" + st.b.HTTPAddr() + "/socketcluster"
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	_, resp, err := d.Dial(u, http.Header{"Origin": {"https://evil.example"}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("bad origin: err %v resp %v", err, resp)
	}
	testutil.DialSC(t, u, http.Header{"Origin": {"https://GOOD.example"}}).Handshake(nil)
	testutil.DialSC(t, u, nil).Handshake(nil) // no Origin: not a browser
	// Other paths are not the bridge.
	if _, resp, err := d.Dial("ws://"+st.b.HTTPAddr()+"/socketcluster/x", nil); err == nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("sub-path: %v %v", err, resp)
	}
}

func TestShutdownClosesSockets(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	a, b := st.connect(t), st.dial(t) // b never handshakes
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := st.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := st.h.Shutdown(ctx); err != nil {
		t.Fatal("second Shutdown:", err)
	}
	for _, c := range []*scClient{a, b} {
		if code, _ := c.WaitClose(); code != bridge.CloseGoingAway {
			t.Errorf("closed with %d, want 1001", code)
		}
	}
	if st.h.Sockets() != 0 {
		t.Errorf("%d sockets left", st.h.Sockets())
	}
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	if _, resp, err := d.Dial("ws://"+st.b.HTTPAddr()+"/socketcluster/", nil); err == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("dial after shutdown: %v %v", err, resp)
	}
}

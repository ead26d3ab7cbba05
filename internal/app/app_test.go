package app_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// startApp runs the whole process wiring on 127.0.0.1 port 0.
func startApp(t *testing.T, mutate func(*config.File)) *app.App {
	t.Helper()
	cfg := config.Default()
	cfg.Listeners.MQTT.Address = "127.0.0.1:0"
	cfg.Listeners.HTTP.Address = "127.0.0.1:0"
	cfg.Persistence.DataDir = t.TempDir()
	cfg.Bridge.PingInterval = 200 * time.Millisecond
	cfg.Bridge.PingTimeout = time.Second
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return a
}

func sc(t *testing.T, a *app.App, opts ...func(*testutil.SCClient)) (*testutil.SCClient, string) {
	t.Helper()
	c := testutil.DialSC(t, testutil.SCURL(a.Broker.HTTPAddr()), nil, opts...)
	hs := c.Handshake(nil)
	id, _ := hs["id"].(string)
	return c, id
}

func mustOK(t *testing.T, p scproto.Packet, what string) scproto.Packet {
	t.Helper()
	if p.Error != nil {
		t.Fatalf("%s: %s", what, p.Error)
	}
	return p
}

func TestBridgeWillFiresOnlyOnUncleanEnd(t *testing.T) {
	a := startApp(t, nil)
	watcher := testutil.MustConnect5(t, a.Broker.MQTTAddr(), "watcher")
	watcher.Sub(t, "wills/#", 1)
	scWatcher, _ := sc(t, a)
	scWatcher.Subscribe("wills/#")

	// TCP reset: the will is published, to MQTT and bridge subscribers alike.
	dropped, _ := sc(t, a)
	mustOK(t, dropped.Invoke("setWill", map[string]any{"channel": "wills/dropped", "data": "gone", "retain": true}), "setWill")
	_ = dropped.Conn().UnderlyingConn().Close()
	m := watcher.Next(t)
	if m.Topic != "wills/dropped" || string(m.Payload) != "gone" || m.Properties.ContentType != "text/plain" {
		t.Fatalf("MQTT subscriber got %s %q (%q)", m.Topic, m.Payload, m.Properties.ContentType)
	}
	if p := scWatcher.NextPub("wills/#"); p.Topic != "wills/dropped" || string(p.Data) != `"gone"` {
		t.Fatalf("bridge subscriber got %+v", p)
	}

	// Ping timeout: the socket stops answering pings; the will comes within
	// bridge.ping_timeout (1s here).
	silent, _ := sc(t, a, testutil.NoPong)
	mustOK(t, silent.Invoke("setWill", map[string]any{"channel": "wills/silent", "data": map[string]int{"code": 7}}), "setWill")
	start := time.Now()
	m = watcher.Next(t)
	if m.Topic != "wills/silent" || string(m.Payload) != `{"code":7}` || m.Properties.ContentType != "application/json" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("ping timeout of 1s detected after %v", d)
	}

	// A clean disconnect() (close 1000) publishes nothing; nor does a will
	// cleared with clearWill.
	polite, politeID := sc(t, a)
	mustOK(t, polite.Invoke("setWill", map[string]any{"channel": "wills/polite", "data": "x"}), "setWill")
	cleared, clearedID := sc(t, a)
	mustOK(t, cleared.Invoke("setWill", map[string]any{"channel": "wills/cleared", "data": "x"}), "setWill")
	mustOK(t, cleared.Invoke("clearWill", map[string]any{"channel": "wills/cleared"}), "clearWill")
	_ = polite.Conn().WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, "bye"))
	polite.WaitClose()
	_ = cleared.Conn().UnderlyingConn().Close()
	// A socket leaves presence only after its will step: once both are gone,
	// any will would already have been published.
	testutil.WaitFor(t, 5*time.Second, func() bool {
		for _, s := range a.Presence.List() {
			if s.ID == politeID || s.ID == clearedID {
				return false
			}
		}
		return true
	}, "both sockets to leave presence")
	testutil.MustConnect5(t, a.Broker.MQTTAddr(), "sentinel").Pub(t, "wills/sentinel", 1, false, "sentinel")
	if m := watcher.Next(t); m.Topic != "wills/sentinel" {
		t.Fatalf("got %s %q: a will was sent after a clean close or clearWill", m.Topic, m.Payload)
	}
}

func TestBridgeWillObeysTheACL(t *testing.T) {
	dir := t.TempDir()
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "apw", auth.DefaultIterations); err != nil {
		t.Fatal(err)
	}
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(acl, []byte("user alice\ntopic readwrite status/alice\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	a := startApp(t, func(c *config.File) { c.Auth.PasswordFile, c.Auth.ACLFile = pw, acl })
	c, _ := sc(t, a)
	c.Login("alice", "apw")
	for _, ch := range []string{"status/bob", "$presence/clients/x", "status/+"} {
		r := c.Invoke("setWill", map[string]any{"channel": ch, "data": "x"})
		if r.Error == nil {
			t.Errorf("setWill on %s accepted", ch)
		}
	}
	r := c.Invoke("setWill", map[string]any{"channel": "status/bob", "data": "x"})
	if name := testutil.ErrName(r); name != "ForbiddenError" {
		t.Fatalf("forbidden will: error %q", name)
	}
	mustOK(t, c.Invoke("setWill", map[string]any{"channel": "status/alice", "data": "offline"}), "allowed setWill")
}

func TestBridgeSocketsInPresence(t *testing.T) {
	a := startApp(t, nil)
	viewer := testutil.MustConnect5(t, a.Broker.MQTTAddr(), "viewer")
	viewer.Sub(t, "$presence/+", 1)
	testutil.MustConnect5(t, a.Broker.MQTTAddr(), "device-1")
	waitEvent := func(id, event string) presence.Event {
		t.Helper()
		for {
			var ev presence.Event
			if err := json.Unmarshal(viewer.Next(t).Payload, &ev); err != nil {
				t.Fatal(err)
			}
			if ev.ID == id && ev.Event == event {
				return ev
			}
		}
	}
	waitEvent("device-1", "connected")

	c, id := sc(t, a)
	ev := waitEvent(id, "connected")
	if ev.Protocol != "socketcluster" || ev.Transport != "websocket" || ev.Remote == "" {
		t.Fatalf("socket presence: %+v", ev)
	}
	// The socket learns its session id, and sees the whole list.
	if r := mustOK(t, c.Invoke("getSessionId", nil), "getSessionId"); string(r.Data) != testutil.Quote(id) {
		t.Fatalf("getSessionId %s, handshake id %s", r.Data, id)
	}
	var list []presence.Session
	if err := json.Unmarshal(mustOK(t, c.Invoke("presence", nil), "presence").Data, &list); err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, s := range list {
		seen[s.ID] = s.Protocol
	}
	if seen["device-1"] != "mqtt" || seen["viewer"] != "mqtt" || seen[id] != "socketcluster" {
		t.Fatalf("presence list %v", seen)
	}
	// Presence topics are channels too.
	c.Subscribe(presence.ClientsFilter)
	got := map[string]bool{}
	for range 3 {
		p := c.NextPub(presence.ClientsFilter)
		got[p.Topic] = true
	}
	if !got[presence.ClientTopic("device-1")] || !got[presence.ClientTopic(id)] {
		t.Fatalf("channel %s delivered %v", presence.ClientsFilter, got)
	}
	// Leaving: a dropped connection is reported as "will", a silent one as
	// "timeout".
	_ = c.Conn().UnderlyingConn().Close()
	if ev := waitEvent(id, "disconnected"); ev.Reason != "will" {
		t.Fatalf("dropped socket reason %q", ev.Reason)
	}
	_, sid := sc(t, a, testutil.NoPong)
	waitEvent(sid, "connected")
	if ev := waitEvent(sid, "disconnected"); ev.Reason != "timeout" {
		t.Fatalf("silent socket reason %q", ev.Reason)
	}
}

// An MQTT client cannot take a bridge socket's id: ids starting with $
// are refused.
func TestMQTTCannotImpersonateASocket(t *testing.T) {
	a := startApp(t, nil)
	_, id := sc(t, a)
	_, ca, err := testutil.Connect5(t, testutil.Dial(t, a.Broker.MQTTAddr()), &paho.Connect{ClientID: id, CleanStart: true})
	if err == nil || ca.ReasonCode != 0x85 {
		t.Fatalf("MQTT connect with a socket's id %q: %v %+v", id, err, ca)
	}
}

// A socket that logs in after connecting shows its user in presence; one
// that connects with a token shows it from the start.
func TestPresenceFollowsSocketLogin(t *testing.T) {
	dir := t.TempDir()
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "apw", auth.DefaultIterations); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(dir, "passwd")
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	anon := true
	a := startApp(t, func(c *config.File) { c.Auth.PasswordFile, c.Auth.AllowAnonymous = pw, &anon })
	viewer := testutil.MustConnect5(t, a.Broker.MQTTAddr(), "viewer")
	viewer.Sub(t, "$presence/#", 1)
	doc := func(id string) presence.Session {
		t.Helper()
		for {
			m := viewer.Next(t)
			if m.Topic == presence.ClientTopic(id) && len(m.Payload) > 0 {
				var s presence.Session
				if err := json.Unmarshal(m.Payload, &s); err != nil {
					t.Fatal(err)
				}
				return s
			}
			if m.Topic == presence.ConnectedTopic {
				var ev presence.Event
				_ = json.Unmarshal(m.Payload, &ev)
				if ev.ID == id && ev.User != "" {
					t.Fatalf("login produced a second connected event: %s", m.Payload)
				}
			}
		}
	}
	c, id := sc(t, a)
	if s := doc(id); s.User != "" {
		t.Fatalf("anonymous socket listed with user %q", s.User)
	}
	token := c.Login("alice", "apw")
	if s := doc(id); s.User != "alice" {
		t.Fatalf("after login the document says user %q", s.User)
	}
	// Reconnecting with the token: the user is there from the first document.
	c2 := testutil.DialSC(t, testutil.SCURL(a.Broker.HTTPAddr()), nil)
	hs := c2.Handshake(&token)
	id2, _ := hs["id"].(string)
	if s := doc(id2); s.User != "alice" {
		t.Fatalf("socket authenticated at handshake listed with user %q", s.User)
	}
}

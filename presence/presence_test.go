package presence_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// pub publishes presence through the broker, as cmd/sockmq does.
type pub struct{ b *broker.Server }

func (p pub) PublishPresence(topic string, payload []byte, retain bool) error {
	err := p.b.Publish(broker.Message{Topic: topic, Payload: payload, Retain: retain, QoS: 1})
	if errors.Is(err, broker.ErrNotRunning) {
		return nil
	}
	return err
}

func startWithPresence(t *testing.T, cfg broker.Config) (*broker.Server, *presence.Tracker) {
	t.Helper()
	b, err := broker.New(cfg, nil, nil, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tr := presence.New(pub{b}, testutil.Logger(t))
	b.OnSession(func(ev broker.SessionEvent) {
		conn := ""
		if ev.Conn != 0 {
			conn = "mqtt-" + strconv.FormatUint(ev.Conn, 10)
		}
		if ev.Connected {
			tr.Connected(presence.Session{ID: ev.ClientID, User: ev.Username, Protocol: presence.ProtocolMQTT,
				Transport: ev.Transport, Remote: ev.Remote, ConnectedAt: ev.ConnectedAt, Conn: conn}, ev.Takeover)
		} else {
			tr.Disconnected(ev.ClientID, conn, ev.Reason)
		}
	})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		tr.Close()
	})
	return b, tr
}

// settled waits until every connected MQTT client is in the tracker and its
// presence messages are published. (The broker reports a session just after
// its CONNACK, so a client can be connected before it is in the list.)
func settled(t *testing.T, tr *presence.Tracker, ids ...string) {
	t.Helper()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		l := tr.List()
		have := map[string]bool{}
		for _, s := range l {
			have[s.ID] = true
		}
		for _, id := range ids {
			if !have[id] {
				return false
			}
		}
		return true
	}, "sessions in the presence list")
	tr.Flush()
}

func decodeEvent(t *testing.T, m *paho.Publish) presence.Event {
	t.Helper()
	var ev presence.Event
	if err := json.Unmarshal(m.Payload, &ev); err != nil {
		t.Fatalf("event on %s is not JSON: %q", m.Topic, m.Payload)
	}
	return ev
}

func TestListOnSubscribeThenLiveUpdates(t *testing.T) {
	b, tr := startWithPresence(t, testutil.BrokerConfig(t))
	testutil.MustConnect5(t, b.MQTTAddr(), "dev-1")
	testutil.MustConnect5(t, b.MQTTAddr(), "dev-2")
	settled(t, tr, "dev-1", "dev-2")

	viewer := testutil.MustConnect5(t, b.MQTTAddr(), "viewer")
	settled(t, tr, "viewer")
	viewer.Sub(t, presence.ClientsFilter, 1)
	seen := map[string]presence.Session{}
	for range 3 { // dev-1, dev-2 and the viewer itself, all retained
		m := viewer.Next(t)
		var s presence.Session
		if err := json.Unmarshal(m.Payload, &s); err != nil {
			t.Fatalf("document %s: %q", m.Topic, m.Payload)
		}
		seen[s.ID] = s
		if m.Topic != presence.ClientTopic(s.ID) {
			t.Fatalf("document for %s published at %s", s.ID, m.Topic)
		}
	}
	for _, id := range []string{"dev-1", "dev-2", "viewer"} {
		s, ok := seen[id]
		if !ok {
			t.Fatalf("list on subscribe lacks %s: %v", id, seen)
		}
		if s.Protocol != "mqtt" || s.Transport != "tcp" || s.Remote == "" || s.ConnectedAt.IsZero() || s.Conn == "" {
			t.Errorf("document fields incomplete: %+v", s)
		}
	}
	viewer.Sub(t, "$presence/+", 1)
	c3 := testutil.MustConnect5(t, b.MQTTAddr(), "dev-3")
	if m := viewer.Next(t); m.Topic != presence.ClientTopic("dev-3") {
		t.Fatalf("got %s, want the new document", m.Topic)
	}
	if ev := decodeEvent(t, viewer.Next(t)); ev.Event != "connected" || ev.ID != "dev-3" || ev.Takeover {
		t.Fatalf("connected event: %+v", ev)
	}
	if err := c3.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	if m := viewer.Next(t); m.Topic != presence.ClientTopic("dev-3") || len(m.Payload) != 0 {
		t.Fatalf("leave: got %s %q, want an empty document", m.Topic, m.Payload)
	}
	if ev := decodeEvent(t, viewer.Next(t)); ev.Event != "disconnected" || ev.ID != "dev-3" || ev.Reason != "clean" {
		t.Fatalf("disconnected event: %+v", ev)
	}
	if got := len(tr.List()); got != 3 {
		t.Fatalf("List has %d sessions, want 3", got)
	}
}

func TestDisconnectReasons(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b, _ := startWithPresence(t, cfg)
	viewer := testutil.MustConnect5(t, b.MQTTAddr(), "viewer")
	viewer.Sub(t, presence.DisconnectedTopic, 1)
	next := func() presence.Event { return decodeEvent(t, viewer.Next(t)) }

	// Network drop: the will is published, reason "will".
	c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "dropper", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "wills/dropper", Payload: []byte("gone")}})
	if err != nil {
		t.Fatal(err)
	}
	viewer.Sub(t, "wills/#", 1)
	c.Drop()
	if m := viewer.Next(t); m.Topic != "wills/dropper" {
		t.Fatalf("the will must come before presence clears the session; got %s", m.Topic)
	}
	if ev := next(); ev.ID != "dropper" || ev.Reason != "will" {
		t.Fatalf("drop: %+v", ev)
	}
	// Keepalive expiry: reason "timeout" (1s keepalive: closed after 1.5s).
	raw := testutil.Dial(t, b.MQTTAddr())
	_, err = raw.Write([]byte{0x10, 0x13, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 1, 0, 7, 's', 'l', 'e', 'e', 'p', 'e', 'r'})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(); ev.ID != "sleeper" || ev.Reason != "timeout" {
		t.Fatalf("keepalive expiry: %+v", ev)
	}
	raw.Close()
}

func TestTakeoverDoesNotFlap(t *testing.T) {
	b, tr := startWithPresence(t, testutil.BrokerConfig(t))
	viewer := testutil.MustConnect5(t, b.MQTTAddr(), "viewer")
	settled(t, tr, "viewer")
	viewer.Sub(t, "$presence/+", 1)
	first := testutil.MustConnect5(t, b.MQTTAddr(), "phone")
	if ev := decodeEvent(t, viewer.Next(t)); ev.ID != "phone" || ev.Event != "connected" || ev.Takeover {
		t.Fatalf("first connect: %+v", ev)
	}
	testutil.MustConnect5(t, b.MQTTAddr(), "phone") // same id: takes the session over
	select {
	case <-first.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old connection not closed by the takeover")
	}
	if ev := decodeEvent(t, viewer.Next(t)); ev.ID != "phone" || ev.Event != "connected" || !ev.Takeover {
		t.Fatalf("takeover: got %+v, want a connected event marked takeover and no disconnected event", ev)
	}
	settled(t, tr)
	testutil.MustConnect5(t, b.MQTTAddr(), "marker")
	if ev := decodeEvent(t, viewer.Next(t)); ev.ID != "marker" {
		t.Fatalf("got %+v after the takeover; the replaced connection must not produce a disconnected event", ev)
	}
	if l := tr.List(); len(l) != 3 {
		t.Fatalf("list after takeover: %+v", l)
	}
}

func TestSpecialCharacterIDsCannotWidenTopics(t *testing.T) {
	b, tr := startWithPresence(t, testutil.BrokerConfig(t))
	viewer := testutil.MustConnect5(t, b.MQTTAddr(), "viewer")
	settled(t, tr, "viewer")
	viewer.Sub(t, presence.ClientsFilter, 1)
	viewer.Next(t) // itself
	id := "a/b+c#d%"
	testutil.MustConnect5(t, b.MQTTAddr(), id)
	m := viewer.Next(t)
	if want := "$presence/clients/a%2Fb%2Bc%23d%25"; m.Topic != want {
		t.Fatalf("topic %q, want %q", m.Topic, want)
	}
	var s presence.Session
	if err := json.Unmarshal(m.Payload, &s); err != nil || s.ID != id {
		t.Fatalf("document %q: id %q", m.Payload, s.ID)
	}
}

func TestClientsCannotWritePresence(t *testing.T) {
	b, tr := startWithPresence(t, testutil.BrokerConfig(t))
	viewer := testutil.MustConnect5(t, b.MQTTAddr(), "viewer")
	settled(t, tr, "viewer")
	viewer.Sub(t, "$presence/#", 1)
	viewer.Next(t) // its own (retained) document
	forger := testutil.MustConnect5(t, b.MQTTAddr(), "forger")
	viewer.Next(t)
	viewer.Next(t)
	if r := forger.Pub(t, "$presence/clients/ghost", 1, true, `{"id":"ghost"}`); r.ReasonCode != 0x87 {
		t.Fatalf("client publish to $presence: PUBACK 0x%x, want 0x87", r.ReasonCode)
	}
	if r := forger.Pub(t, presence.ConnectedTopic, 1, false, `{}`); r.ReasonCode != 0x87 {
		t.Fatalf("client publish to $presence/connected: PUBACK 0x%x", r.ReasonCode)
	}
	// The presence list did not change: the next thing the viewer sees is a real join.
	testutil.MustConnect5(t, b.MQTTAddr(), "real")
	if m := viewer.Next(t); m.Topic != presence.ClientTopic("real") {
		t.Fatalf("viewer saw %s %q", m.Topic, m.Payload)
	}
}

func TestPresenceReadableOnlyAsTheACLAllows(t *testing.T) {
	dir := t.TempDir()
	var pf auth.PasswordFile
	for _, u := range []string{"ops", "device"} {
		if _, err := pf.Set(u, u+"-pw", auth.DefaultIterations); err != nil {
			t.Fatal(err)
		}
	}
	pw, acl := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(acl, []byte("user ops\ntopic read $presence/#\ntopic read #\nuser device\ntopic readwrite #\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{PasswordFile: pw, ACLFile: acl}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	b, err := broker.New(testutil.BrokerConfig(t), svc, nil, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	tr := presence.New(pub{b}, testutil.Logger(t))
	b.OnSession(func(ev broker.SessionEvent) {
		if ev.Connected {
			tr.Connected(presence.Session{ID: ev.ClientID, User: ev.Username, Protocol: "mqtt", Conn: strconv.FormatUint(ev.Conn, 10)}, ev.Takeover)
		}
	})
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = b.Shutdown(ctx)
		tr.Close()
	})
	loginAs := func(id, user string) *testutil.Client5 {
		c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: id, CleanStart: true,
			Username: user, UsernameFlag: true, Password: []byte(user + "-pw"), PasswordFlag: true})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ops, device := loginAs("ops", "ops"), loginAs("device", "device")
	settled(t, tr, "ops", "device")
	if rc := device.Sub(t, presence.ClientsFilter, 1); rc[0] != 0x87 {
		t.Fatalf("device (no $presence grant) subscribing to presence: 0x%x, want 0x87", rc[0])
	}
	device.Sub(t, "#", 1) // "#" never matches $ topics
	if rc := ops.Sub(t, presence.ClientsFilter, 1); rc[0] != 1 {
		t.Fatalf("ops subscribing to presence: 0x%x", rc[0])
	}
	got := map[string]bool{}
	for range 2 {
		got[ops.Next(t).Topic] = true
	}
	if !got[presence.ClientTopic("ops")] || !got[presence.ClientTopic("device")] {
		t.Fatalf("ops got %v", got)
	}
	loginAs("third", "device")
	_ = ops.Next(t) // ops sees the join
	ops.Pub(t, "plain/topic", 0, false, "")
	device.Pub(t, "plain/marker", 1, false, "marker")
	if m := device.Next(t); m.Topic != "plain/marker" {
		t.Fatalf("device subscribed to # received %s", m.Topic)
	}
}

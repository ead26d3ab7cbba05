package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// startJetStream runs a JetStream nats-server on a random loopback port.
func startJetStream(t testing.TB) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// startNode runs a sockmq node whose control state lives on s (a single
// node without control state when node is empty).
func startNode(t testing.TB, s *server.Server, node string, mutate func(*config.File)) *app.App {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listeners.MQTT.Address = "127.0.0.1:0"
	cfg.Listeners.HTTP.Address = "127.0.0.1:0"
	cfg.Persistence.DataDir = t.TempDir()
	if mutate != nil {
		mutate(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	var a *app.App
	if node == "" { // a single node, for comparison
		a, err = app.New(cfg, testutil.Logger(t))
	} else {
		a, err = app.NewWithControl(cfg, testutil.Logger(t), js, "t", node, 2*time.Second)
	}
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

// connectRaw sends CONNECT with a user name and returns the CONNACK code.
func connectRaw(t testing.TB, addr string, version byte, id, user, password string) (*testutil.Raw, byte) {
	t.Helper()
	c := testutil.DialRaw(t, addr, version)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}}
	pk.Connect.ProtocolName = []byte("MQTT")
	pk.Connect.Clean = true
	pk.Connect.ClientIdentifier = id
	pk.Connect.Keepalive = 60
	if user != "" {
		pk.Connect.UsernameFlag, pk.Connect.Username = true, []byte(user)
		pk.Connect.PasswordFlag, pk.Connect.Password = true, []byte(password)
	}
	c.Send(pk)
	ack := c.Next(5 * time.Second)
	if ack.FixedHeader.Type != packets.Connack {
		t.Fatalf("expected CONNACK, got %s", packets.PacketNames[ack.FixedHeader.Type])
	}
	return c, ack.ReasonCode
}

// A client reconnecting on another node takes its client id over: the old
// node ends the old connection with 0x8E and the new one stays (no flap).
func TestClusterTakeoverAcrossNodes(t *testing.T) {
	s := startJetStream(t)
	a := startNode(t, s, "a", nil)
	b := startNode(t, s, "b", nil)
	old, code := connectRaw(t, a.Broker.MQTTAddr(), 5, "dev-1", "", "")
	if code != 0 {
		t.Fatalf("CONNACK on a: %#x", code)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return b.Control.Alive("a") }, "b sees a")
	events := testutil.MustConnect5(t, b.Broker.MQTTAddr(), "events")
	events.Sub(t, presence.ConnectedTopic, 0)
	cur, code := connectRaw(t, b.Broker.MQTTAddr(), 5, "dev-1", "", "")
	if code != 0 {
		t.Fatalf("CONNACK on b: %#x", code)
	}
	pk, _ := old.Expect(packets.Disconnect, 5*time.Second)
	if pk.ReasonCode != packets.ErrSessionTakenOver.Code {
		t.Fatalf("old connection got DISCONNECT %#x, want 0x8E", pk.ReasonCode)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return !a.Broker.Connected("dev-1") }, "session gone from a")
	var ev presence.Event
	if err := json.Unmarshal(events.Next(t).Payload, &ev); err != nil || ev.ID != "dev-1" || ev.Node != "b" || !ev.Takeover || ev.ConnectedAt.IsZero() {
		t.Fatalf("connected event %+v (%v): want dev-1 on node b, takeover, connected_at", ev, err)
	}
	// The old node forgets the session without a leave of its own.
	testutil.WaitFor(t, 5*time.Second, func() bool {
		for _, s := range a.Presence.List() {
			if s.ID == "dev-1" {
				return false
			}
		}
		return true
	}, "dev-1 gone from a's presence list")
	// The new connection stays.
	for range 3 {
		cur.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Pingreq}})
		if pk := cur.Next(5 * time.Second); pk.FixedHeader.Type != packets.Pingresp {
			t.Fatalf("new connection got %s, want PINGRESP", packets.PacketNames[pk.FixedHeader.Type])
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !b.Broker.Connected("dev-1") || a.Broker.Connected("dev-1") {
		t.Fatal("client id should be connected on b only")
	}
	// And back to a: b lets it go.
	_, code = connectRaw(t, a.Broker.MQTTAddr(), 4, "dev-1", "", "")
	if code != 0 {
		t.Fatalf("CONNACK on a again: %#x", code)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return !b.Broker.Connected("dev-1") }, "session gone from b")
}

// A client id owned by one user is refused to another user on any node.
func TestClusterClientIDOfAnotherUserRefused(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	var pf auth.PasswordFile
	for _, u := range []string{"alice", "bob"} {
		if _, err := pf.Set(u, "pw-"+u, auth.DefaultIterations); err != nil {
			t.Fatal(err)
		}
	}
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	withPW := func(c *config.File) { c.Auth.PasswordFile = pw }
	s := startJetStream(t)
	a := startNode(t, s, "a", withPW)
	b := startNode(t, s, "b", withPW)
	if _, code := connectRaw(t, a.Broker.MQTTAddr(), 5, "shared-id", "alice", "pw-alice"); code != 0 {
		t.Fatalf("alice on a: %#x", code)
	}
	if _, code := connectRaw(t, b.Broker.MQTTAddr(), 5, "shared-id", "bob", "pw-bob"); code != packets.ErrNotAuthorized.Code {
		t.Fatalf("bob on b with alice's client id: CONNACK %#x, want 0x87", code)
	}
	if _, code := connectRaw(t, b.Broker.MQTTAddr(), 4, "shared-id", "bob", "pw-bob"); code != 5 {
		t.Fatalf("bob (3.1.1) on b with alice's client id: CONNACK %d, want 5", code)
	}
	if !a.Broker.Connected("shared-id") {
		t.Fatal("alice's connection was disturbed")
	}
}

// When the cluster's state cannot be reached, CONNECT is refused with
// "server unavailable" (MQTT 5 0x88, MQTT 3.1.1 code 3).
func TestClusterConnectRefusedWhenOwnershipCannotBeChecked(t *testing.T) {
	s := startJetStream(t)
	a := startNode(t, s, "a", nil)
	s.Shutdown()
	s.WaitForShutdown()
	if _, code := connectRaw(t, a.Broker.MQTTAddr(), 5, "x5", "", ""); code != packets.ErrServerUnavailable.Code {
		t.Fatalf("MQTT 5 CONNECT without NATS: %#x, want 0x88", code)
	}
	if _, code := connectRaw(t, a.Broker.MQTTAddr(), 4, "x4", "", ""); code != 3 {
		t.Fatalf("MQTT 3.1.1 CONNECT without NATS: %d, want 3", code)
	}
}

// /healthz lists the cluster's nodes and names the auth files whose hash
// differs between live nodes.
func TestClusterHealthReportsFilesThatDiffer(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{}
	for _, node := range []string{"a", "b"} {
		var pf auth.PasswordFile
		if _, err := pf.Set("user-"+node, "pw", auth.DefaultIterations); err != nil {
			t.Fatal(err)
		}
		files[node] = filepath.Join(dir, node+".passwd")
		if err := pf.Save(files[node]); err != nil {
			t.Fatal(err)
		}
	}
	s := startJetStream(t)
	a := startNode(t, s, "a", func(c *config.File) { c.Auth.PasswordFile = files["a"] })
	startNode(t, s, "b", func(c *config.File) { c.Auth.PasswordFile = files["b"] })
	var h struct {
		Status  string `json:"status"`
		Control struct {
			Nodes []struct {
				Node  string `json:"node"`
				Alive bool   `json:"alive"`
			} `json:"nodes"`
			FilesDiffer []string `json:"files_differ"`
		} `json:"cluster_control"`
	}
	testutil.WaitFor(t, 10*time.Second, func() bool {
		resp, err := http.Get("http://" + a.Broker.HTTPAddr() + "/healthz")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&h) == nil && len(h.Control.Nodes) == 2
	}, "both nodes in /healthz")
	if h.Status != "ok" || len(h.Control.FilesDiffer) != 1 || h.Control.FilesDiffer[0] != "password_file" {
		t.Fatalf("/healthz = %+v, want files_differ [password_file]", h)
	}
}

// A bridge token signed on one node works on another (same
// bridge.auth_key); a logout on the first node revokes it on both: the
// socket holding it on the other node loses it, and it no longer
// authenticates there.
func TestClusterBridgeTokensAndRevocationsAcrossNodes(t *testing.T) {
	pw := filepath.Join(t.TempDir(), "passwd")
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "pw-alice", auth.DefaultIterations); err != nil {
		t.Fatal(err)
	}
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	mutate := func(c *config.File) {
		c.Auth.PasswordFile = pw
		c.Bridge.Enabled = true
		c.Bridge.AuthKey = "0123456789abcdef0123456789abcdef"
	}
	s := startJetStream(t)
	a := startNode(t, s, "a", mutate)
	b := startNode(t, s, "b", mutate)

	onA, _ := sc(t, a)
	tok := onA.Login("alice", "pw-alice")
	onB := testutil.DialSC(t, testutil.SCURL(b.Broker.HTTPAddr()), nil)
	if hs := onB.Handshake(&tok); hs["isAuthenticated"] != true {
		t.Fatalf("token from node a on node b: handshake %v", hs)
	}
	mustOK(t, onA.Invoke("logout", nil), "logout on a")
	onB.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken on node b after the logout on node a")
	again := testutil.DialSC(t, testutil.SCURL(b.Broker.HTTPAddr()), nil)
	if hs := again.Handshake(&tok); hs["isAuthenticated"] != false {
		t.Fatalf("logged-out token still authenticates on node b: %v", hs)
	}
}

// A delayed will pending on one node is cancelled when the client
// reconnects on another node in time.
func TestClusterDelayedWillCancelledByReconnectElsewhere(t *testing.T) {
	s := startJetStream(t)
	a := startNode(t, s, "a", nil)
	b := startNode(t, s, "b", nil)
	watch := testutil.MustConnect5(t, a.Broker.MQTTAddr(), "watch")
	watch.Sub(t, "wills/#", 1)
	delay := uint32(2)
	expiry := uint32(60)
	dev, _, err := testutil.Connect5(t, testutil.Dial(t, a.Broker.MQTTAddr()), &paho.Connect{ClientID: "dev", CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "wills/dev", Payload: []byte("gone"), QoS: 1},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return b.Control.Alive("a") }, "b sees a")
	dev.Drop() // the will is now pending on a, due in 2 s
	testutil.WaitFor(t, 5*time.Second, func() bool { return !a.Broker.Connected("dev") }, "dev offline on a")
	if _, code := connectRaw(t, b.Broker.MQTTAddr(), 5, "dev", "", ""); code != 0 {
		t.Fatalf("reconnect on b: %#x", code)
	}
	select {
	case m := <-watch.Msgs:
		t.Fatalf("will published although the client reconnected on another node: %s", m.Topic)
	case <-time.After(time.Duration(delay)*time.Second + time.Second):
	}
}

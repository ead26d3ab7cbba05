package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// connectPersistent connects an MQTT 5 client with clean start false and a
// session expiry, returning it and whether the session was present.
func connectPersistent(t *testing.T, addr, id string) (*testutil.Client5, bool) {
	t.Helper()
	expiry := uint32(300)
	c, ca, err := testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{ClientID: id, CleanStart: false,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatalf("connect %s to %s: %v", id, addr, err)
	}
	return c, ca.SessionPresent
}

// disconnect ends c with a normal DISCONNECT (the session stays).
func disconnect(t *testing.T, c *testutil.Client5) {
	t.Helper()
	if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatalf("disconnect: %v", err)
	}
}

// A persistent session moves with its client to another live node: the
// messages queued for it on the old node arrive in order on the new node,
// its subscription works there without subscribing again, and the old
// node no longer holds it.
func TestClusterSessionHandover(t *testing.T) {
	s := startJetStream(t)
	n1 := startNode(t, s, "n1", nil)
	n2 := startNode(t, s, "n2", nil)
	testutil.WaitFor(t, 5*time.Second, func() bool { return n2.Control.Alive("n1") }, "n2 sees n1")

	sub, present := connectPersistent(t, n1.Broker.MQTTAddr(), "mover")
	if present {
		t.Fatal("first connection: session present")
	}
	sub.Sub(t, "ho/t", 1)
	disconnect(t, sub)
	testutil.WaitFor(t, 5*time.Second, func() bool { return !n1.Broker.Connected("mover") }, "mover offline on n1")

	pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "pub1")
	for i := range 5 {
		pub.Pub(t, "ho/t", 1, false, fmt.Sprintf("m%d", i))
	}

	moved, present := connectPersistent(t, n2.Broker.MQTTAddr(), "mover")
	if !present {
		t.Fatal("reconnect on n2: SessionPresent=false, want true (session handed over from n1)")
	}
	for i := range 5 {
		m := moved.Next(t)
		if want := fmt.Sprintf("m%d", i); string(m.Payload) != want || m.QoS != 1 {
			t.Fatalf("message %d on n2: %q QoS %d, want %q QoS 1", i, m.Payload, m.QoS, want)
		}
	}
	// The subscription came along: a publish on n2 reaches the client.
	pub2 := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "pub2")
	pub2.Pub(t, "ho/t", 1, false, "after")
	if m := moved.Next(t); string(m.Payload) != "after" {
		t.Fatalf("after the move: got %q, want \"after\"", m.Payload)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return !n1.Broker.HasSession("mover") }, "n1 dropped the handed-over session")
	select {
	case m := <-moved.Msgs:
		t.Fatalf("unexpected extra message %q (duplicate?)", m.Payload)
	case <-time.After(200 * time.Millisecond):
	}
}

// With the old node down, the client gets a fresh session on the new node
// (SessionPresent=false) and a working connection; when the old node comes
// back, it drops its restored copy of the session, whose client id moved.
func TestClusterSessionHandoverOldNodeDown(t *testing.T) {
	s := startJetStream(t)
	dir1 := t.TempDir()
	withDir := func(c *config.File) { c.Persistence.DataDir = dir1 }
	n1 := startNode(t, s, "n1", withDir)
	n2 := startNode(t, s, "n2", nil)
	testutil.WaitFor(t, 5*time.Second, func() bool { return n2.Control.Alive("n1") }, "n2 sees n1")

	sub, _ := connectPersistent(t, n1.Broker.MQTTAddr(), "mover")
	sub.Sub(t, "ho/t", 1)
	disconnect(t, sub)
	pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "pub1")
	pub.Pub(t, "ho/t", 1, false, "lost with n1")
	pub.Drop()
	stopNode(t, n1)

	moved, present := connectPersistent(t, n2.Broker.MQTTAddr(), "mover")
	if present {
		t.Fatal("reconnect on n2 with n1 down: SessionPresent=true, want false")
	}
	moved.Sub(t, "ho/t", 1)
	pub2 := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "pub2")
	pub2.Pub(t, "ho/t", 1, false, "fresh")
	if m := moved.Next(t); string(m.Payload) != "fresh" {
		t.Fatalf("on n2: got %q, want \"fresh\"", m.Payload)
	}

	// n1 restarts with its store: the restored session is dropped, as the
	// client id now belongs to n2.
	n1b := startNode(t, s, "n1", withDir)
	if n1b.Broker.HasSession("mover") {
		t.Fatal("restarted n1 still holds the session of a client id claimed on n2")
	}
	if !n2.Broker.Connected("mover") {
		t.Fatal("the client on n2 was disturbed by n1's restart")
	}
}

// stopNode shuts a node down (its later cleanup shutdown is a no-op).
func stopNode(t *testing.T, a *app.App) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}

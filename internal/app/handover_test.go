package app_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

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

	// Only the node holding the current claim may fetch the session.
	if _, err := n2.Control.FetchSession(context.Background(), "mover", 1, "n1"); err == nil {
		t.Fatal("n2 fetched the session of a client id it does not own")
	}
	if !n1.Broker.HasSession("mover") {
		t.Fatal("a refused fetch dropped the session on n1")
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

// QoS 2 state moves with the session: a message whose PUBREC the client
// sent is completed with PUBREL on the new node (not sent again), one it
// had not acknowledged is sent again with the same packet id and DUP, and
// an inbound QoS 2 publish awaiting PUBREL is completed there.
func TestClusterSessionHandoverQoS2(t *testing.T) {
	s := startJetStream(t)
	n1 := startNode(t, s, "n1", nil)
	n2 := startNode(t, s, "n2", nil)
	testutil.WaitFor(t, 5*time.Second, func() bool { return n2.Control.Alive("n1") }, "n2 sees n1")

	c := testutil.DialRaw(t, n1.Broker.MQTTAddr(), 5)
	if ack := c.Connect("q2", false, 300); ack.ReasonCode != 0 {
		t.Fatalf("CONNACK on n1: %#x", ack.ReasonCode)
	}
	c.Subscribe(1, "q2/t", 2)
	pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "pub1")
	pub.Pub(t, "q2/t", 2, false, "a")
	pub.Pub(t, "q2/t", 2, false, "b")
	pa, _ := c.Expect(packets.Publish, 5*time.Second)
	pb, _ := c.Expect(packets.Publish, 5*time.Second)
	if string(pa.Payload) != "a" || string(pb.Payload) != "b" {
		t.Fatalf("on n1: got %q, %q", pa.Payload, pb.Payload)
	}
	c.Ack(packets.Pubrec, pa.PacketID)
	if rel, _ := c.Expect(packets.Pubrel, 5*time.Second); rel.PacketID != pa.PacketID {
		t.Fatalf("PUBREL %d, want %d", rel.PacketID, pa.PacketID)
	}
	c.Publish(7, "other/x", 2, false, false, "in")
	if rec, _ := c.Expect(packets.Pubrec, 5*time.Second); rec.PacketID != 7 {
		t.Fatalf("PUBREC %d, want 7", rec.PacketID)
	}
	c.Close()
	testutil.WaitFor(t, 5*time.Second, func() bool { return !n1.Broker.Connected("q2") }, "q2 offline on n1")

	d := testutil.DialRaw(t, n2.Broker.MQTTAddr(), 5)
	if ack := d.Connect("q2", false, 300); ack.ReasonCode != 0 || !ack.SessionPresent {
		t.Fatalf("CONNACK on n2: code %#x present %v, want 0 and present", ack.ReasonCode, ack.SessionPresent)
	}
	first, second := d.Next(5*time.Second), d.Next(5*time.Second)
	if first.FixedHeader.Type != packets.Pubrel || first.PacketID != pa.PacketID {
		t.Fatalf("first packet on n2: %s %d, want PUBREL %d", packets.PacketNames[first.FixedHeader.Type], first.PacketID, pa.PacketID)
	}
	if second.FixedHeader.Type != packets.Publish || second.PacketID != pb.PacketID || !second.FixedHeader.Dup || string(second.Payload) != "b" {
		t.Fatalf("second packet on n2: %s id %d dup %v %q, want PUBLISH %d dup \"b\"",
			packets.PacketNames[second.FixedHeader.Type], second.PacketID, second.FixedHeader.Dup, second.Payload, pb.PacketID)
	}
	d.Ack(packets.Pubcomp, pa.PacketID)
	d.Ack(packets.Pubrec, pb.PacketID)
	if rel, _ := d.Expect(packets.Pubrel, 5*time.Second); rel.PacketID != pb.PacketID {
		t.Fatalf("PUBREL %d, want %d", rel.PacketID, pb.PacketID)
	}
	d.Ack(packets.Pubcomp, pb.PacketID)
	d.Ack(packets.Pubrel, 7)
	if comp, _ := d.Expect(packets.Pubcomp, 5*time.Second); comp.PacketID != 7 || comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %d reason %#x, want 7 and success (inbound QoS 2 id handed over)", comp.PacketID, comp.ReasonCode)
	}
	if pk, err := d.TryNext(300 * time.Millisecond); err == nil {
		t.Fatalf("unexpected %s %q after completing both messages (duplicate?)", packets.PacketNames[pk.FixedHeader.Type], pk.Payload)
	}
}

// A client still connected on the old node that connects to another node
// keeps its session: the old connection ends with 0x8E and the
// subscription works on the new node.
func TestClusterSessionHandoverLiveConnection(t *testing.T) {
	s := startJetStream(t)
	n1 := startNode(t, s, "n1", nil)
	n2 := startNode(t, s, "n2", nil)
	testutil.WaitFor(t, 5*time.Second, func() bool { return n2.Control.Alive("n1") }, "n2 sees n1")

	old, _ := connectPersistent(t, n1.Broker.MQTTAddr(), "live")
	old.Sub(t, "live/t", 1)
	cur, present := connectPersistent(t, n2.Broker.MQTTAddr(), "live")
	if !present {
		t.Fatal("takeover on n2 of a live session on n1: SessionPresent=false, want true")
	}
	select {
	case d := <-old.Disconnected:
		if d.ReasonCode != 0x8E {
			t.Fatalf("old connection: DISCONNECT %#x, want 0x8E", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("old connection on n1 not ended")
	}
	pub := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "pub2")
	pub.Pub(t, "live/t", 1, false, "here")
	if m := cur.Next(t); string(m.Payload) != "here" {
		t.Fatalf("got %q, want \"here\"", m.Payload)
	}
}

// Handed-over messages count against the new node's limits: with
// limits.max_inflight 3 there, the oldest three arrive and the rest are
// dropped as for any full queue.
func TestClusterSessionHandoverQueueLimit(t *testing.T) {
	s := startJetStream(t)
	n1 := startNode(t, s, "n1", nil)
	n2 := startNode(t, s, "n2", func(c *config.File) { c.Limits.MaxInflight = 3 })
	testutil.WaitFor(t, 5*time.Second, func() bool { return n2.Control.Alive("n1") }, "n2 sees n1")

	sub, _ := connectPersistent(t, n1.Broker.MQTTAddr(), "lim")
	sub.Sub(t, "lim/t", 1)
	disconnect(t, sub)
	pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "pub1")
	for i := range 5 {
		pub.Pub(t, "lim/t", 1, false, fmt.Sprintf("m%d", i))
	}
	moved, present := connectPersistent(t, n2.Broker.MQTTAddr(), "lim")
	if !present {
		t.Fatal("SessionPresent=false, want true")
	}
	for i := range 3 {
		if m := moved.Next(t); string(m.Payload) != fmt.Sprintf("m%d", i) {
			t.Fatalf("message %d: %q", i, m.Payload)
		}
	}
	select {
	case m := <-moved.Msgs:
		t.Fatalf("message %q beyond n2's limits.max_inflight of 3", m.Payload)
	case <-time.After(300 * time.Millisecond):
	}
}

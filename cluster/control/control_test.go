package control

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"
)

func TestClaimEpochsTakeoverAndCrossUser(t *testing.T) {
	s := startServer(t)
	a := startNode(t, s, "a", 2*time.Second, nil)
	b := startNode(t, s, "b", 2*time.Second, nil)
	ctx := context.Background()

	g1, err := a.c.Claim(ctx, Claim{ClientID: "dev/1", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if g1.Takeover {
		t.Fatal("first claim reported a takeover")
	}
	waitFor(t, 5*time.Second, "b sees a alive", func() bool { return b.c.Alive("a") })
	g2, err := b.c.Claim(ctx, Claim{ClientID: "dev/1", User: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	if g2.Epoch <= g1.Epoch || !g2.Takeover || g2.PrevNode != "a" {
		t.Fatalf("claim on b = %+v after %+v: want a newer epoch and a takeover from a", g2, g1)
	}
	waitFor(t, 5*time.Second, "a told of the takeover", func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return a.rec.takenOver["dev/1"] == g2.Epoch
	})
	b.rec.mu.Lock()
	seen := b.rec.takenOver["dev/1"]
	b.rec.mu.Unlock()
	if seen >= g2.Epoch {
		t.Fatal("the claiming node was told its own claim was a takeover")
	}

	if _, err := a.c.Claim(ctx, Claim{ClientID: "dev/1", User: "mallory"}); !errors.Is(err, ErrOwnedByOther) {
		t.Fatalf("claim by another user: err = %v, want ErrOwnedByOther", err)
	}
	// A stale release (old epoch, old node) changes nothing; the owner's
	// release frees the id for anyone.
	a.c.Release("dev/1", g1.Epoch)
	if _, err := a.c.Claim(ctx, Claim{ClientID: "dev/1", User: "mallory"}); !errors.Is(err, ErrOwnedByOther) {
		t.Fatalf("after a stale release: err = %v, want ErrOwnedByOther", err)
	}
	b.c.Release("dev/1", g2.Epoch)
	if _, err := a.c.Claim(ctx, Claim{ClientID: "dev/1", User: "mallory"}); err != nil {
		t.Fatalf("after the owner's release: %v", err)
	}
}

func TestClaimRefusedWhenNATSIsDown(t *testing.T) {
	s := startServer(t)
	a := startNode(t, s, "a", 2*time.Second, nil)
	s.Shutdown()
	s.WaitForShutdown()
	start := time.Now()
	_, err := a.c.Claim(context.Background(), Claim{ClientID: "x", User: "u"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("claim without NATS: err = %v, want ErrUnavailable", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("claim took %v to fail", d)
	}
}

func TestDeadNodeWillsOnceAndPresenceLeaves(t *testing.T) {
	s := startServer(t)
	const ttl = time.Second
	a := startNode(t, s, "a", ttl, nil)
	b := startNode(t, s, "b", ttl, nil)
	c := startNode(t, s, "c", ttl, nil)
	ctx := context.Background()
	for _, id := range []string{"w1", "w2"} {
		if _, err := a.c.Claim(ctx, Claim{ClientID: id, User: "alice", Will: &Will{Topic: "status/" + id, Payload: []byte("offline")}}); err != nil {
			t.Fatal(err)
		}
		a.c.MirrorPresence(id, []byte(`{"id":"`+id+`","protocol":"mqtt","node":"a","connected_at":"2026-01-01T00:00:00Z"}`))
	}
	// A delayed will whose client comes back on b before the delay ends.
	if _, err := a.c.Claim(ctx, Claim{ClientID: "d1", User: "alice", Will: &Will{Topic: "status/d1", Delay: 2}}); err != nil {
		t.Fatal(err)
	}
	// A will that the ACL no longer allows.
	waitFor(t, 5*time.Second, "presence mirrored", func() bool { return len(b.c.entries(b.c.presence, "a")) == 2 })
	waitFor(t, 5*time.Second, "all nodes alive", func() bool { return b.c.Alive("a") && c.c.Alive("a") })

	died := time.Now()
	a.stop(t) // no more heartbeats: a is dead
	if _, err := b.c.Claim(ctx, Claim{ClientID: "d1", User: "alice"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 6*ttl, "both immediate wills published", func() bool { return b.rec.willCount()+c.rec.willCount() >= 2 })
	t.Logf("wills published %v after the node stopped (ttl %v)", time.Since(died).Round(10*time.Millisecond), ttl)
	waitFor(t, 6*ttl, "presence leaves", func() bool {
		n := 0
		for _, r := range []*recorder{b.rec, c.rec} {
			r.mu.Lock()
			for _, p := range r.presence {
				if strings.HasPrefix(p, "$presence/disconnected ") && strings.Contains(p, `"reason":"node_down"`) {
					n++
				}
			}
			r.mu.Unlock()
		}
		return n == 2
	})
	// Past the delay: the delayed will stays cancelled, nothing twice.
	time.Sleep(2500 * time.Millisecond)
	if n := b.rec.willCount() + c.rec.willCount(); n != 2 {
		t.Fatalf("%d wills published, want 2 (the delayed one was cancelled by the reconnect)", n)
	}
	for _, r := range []*recorder{b.rec, c.rec} {
		r.mu.Lock()
		for _, w := range r.wills {
			if w.ClientID == "d1" {
				t.Error("cancelled delayed will published")
			}
		}
		r.mu.Unlock()
	}

	// The dead node restarts: its restored sessions find no will to send.
	a2 := startNode(t, s, "a", ttl, nil)
	for _, id := range []string{"w1", "w2"} {
		if a2.c.ClaimWill(id) {
			t.Errorf("restarted node may send the will of %s a second time", id)
		}
	}
	time.Sleep(300 * time.Millisecond)
	if n := a2.rec.willCount(); n != 0 {
		t.Fatalf("restarted node published %d wills", n)
	}
}

func TestRestartedNodeSendsWillsLeftInStore(t *testing.T) {
	s := startServer(t)
	a := startNode(t, s, "a", 5*time.Second, nil)
	if _, err := a.c.Claim(context.Background(), Claim{ClientID: "w", User: "u", Will: &Will{Topic: "t/w"}}); err != nil {
		t.Fatal(err)
	}
	a.stop(t)
	// Back before anyone noticed it was gone: its previous run's will is
	// sent once, by the node itself.
	a2 := startNode(t, s, "a", 5*time.Second, nil)
	waitFor(t, 5*time.Second, "will of the previous run", func() bool { return a2.rec.willCount() == 1 })
	if a2.c.ClaimWill("w") {
		t.Fatal("the will could be claimed again after it was sent")
	}
}

func TestRevocationsReachEveryNode(t *testing.T) {
	s := startServer(t)
	a := startNode(t, s, "a", 2*time.Second, nil)
	b := startNode(t, s, "b", 2*time.Second, nil)
	ra, rb := a.c.Revocations(), b.c.Revocations()
	got := make(chan string, 1)
	rb.OnRevoke(func(jti string) { got <- jti })
	if err := ra.Revoke("tok-1", time.Now().Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	select {
	case jti := <-got:
		if jti != "tok-1" {
			t.Fatalf("revoked %q", jti)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("revocation did not reach the other node")
	}
	if !rb.Revoked("tok-1") || rb.Revoked("tok-2") {
		t.Fatal("Revoked answers wrong on the other node")
	}
	// A node started later loads it.
	c := startNode(t, s, "c", 2*time.Second, nil)
	if !c.c.Revocations().Revoked("tok-1") {
		t.Fatal("a later node does not see the revocation")
	}
}

func TestHealthReportsFilesThatDiffer(t *testing.T) {
	s := startServer(t)
	a := startNode(t, s, "a", 2*time.Second, map[string]string{"passwd": "h1", "acl": "x"})
	startNode(t, s, "b", 2*time.Second, map[string]string{"passwd": "h2", "acl": "x"})
	waitFor(t, 5*time.Second, "both nodes in health", func() bool { return len(a.c.Health().Nodes) == 2 })
	h := a.c.Health()
	if len(h.FilesDiffer) != 1 || h.FilesDiffer[0] != "passwd" {
		t.Fatalf("files_differ = %v, want [passwd]", h.FilesDiffer)
	}
}

// A reaped will is checked against the ACL when it is sent: refused, it
// is dropped (and not left for anyone else to send).
func TestReapedWillObeysACL(t *testing.T) {
	s := startServer(t)
	const ttl = time.Second
	a := startNode(t, s, "a", ttl, nil)
	b := startNode(t, s, "b", ttl, nil)
	b.rec.mu.Lock()
	b.rec.deny = true
	b.rec.mu.Unlock()
	if _, err := a.c.Claim(context.Background(), Claim{ClientID: "w", User: "u", Will: &Will{Topic: "t/w"}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b sees a and its will", func() bool { return b.c.Alive("a") && len(b.c.entries(b.c.wills, "a")) == 1 })
	a.stop(t)
	waitFor(t, 8*ttl, "will claimed by the reaper", func() bool { return len(b.c.entries(b.c.wills, "a")) == 0 })
	if n := b.rec.willCount(); n != 0 {
		t.Fatalf("%d wills published against the ACL", n)
	}
}

// A node whose heartbeat failed for longer than node_ttl (NATS out of
// reach) is told when it heart-beats again, to publish its presence anew.
func TestRejoinedAfterAnOutage(t *testing.T) {
	dir := t.TempDir()
	s := startServerAt(t, -1, dir)
	port := s.Addr().(*net.TCPAddr).Port
	const ttl = 800 * time.Millisecond
	a := startNode(t, s, "a", ttl, nil)
	s.Shutdown()
	s.WaitForShutdown()
	time.Sleep(2 * ttl) // the outage must outlast the TTL
	startServerAt(t, port, dir)
	waitFor(t, 15*time.Second, "rejoined hook", func() bool {
		a.rec.mu.Lock()
		defer a.rec.mu.Unlock()
		return a.rec.rejoined == 1
	})
}

// An outage that silences every node (here the NATS server is down for
// longer than node_ttl, as when JetStream elects new leaders after a node
// died) is no evidence that a peer died: once heartbeats work again nobody
// reaps anybody, and no will of a live node's client goes out.
func TestOutageForEveryoneReapsNobody(t *testing.T) {
	dir := t.TempDir()
	s := startServerAt(t, -1, dir)
	port := s.Addr().(*net.TCPAddr).Port
	const ttl = 800 * time.Millisecond
	a := startNode(t, s, "a", ttl, nil)
	b := startNode(t, s, "b", ttl, nil)
	if _, err := b.c.Claim(context.Background(), Claim{ClientID: "w", User: "alice", Will: &Will{Topic: "status/w", Payload: []byte("offline")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "both nodes see each other", func() bool { return a.c.Alive("b") && b.c.Alive("a") })

	s.Shutdown()
	s.WaitForShutdown()
	waitFor(t, 10*time.Second, "each node's view of the other going stale", func() bool { return !a.c.Alive("b") && !b.c.Alive("a") })
	startServerAt(t, port, dir)
	waitFor(t, 15*time.Second, "fresh heartbeats seen both ways", func() bool { return a.c.Alive("b") && b.c.Alive("a") })
	// A full node_ttl more (four beats of each node), so that a reap decided
	// at any beat after the outage would have published by now.
	deadline := time.Now().Add(ttl)
	waitFor(t, 5*time.Second, "another node_ttl", func() bool { return time.Now().After(deadline) })
	for name, r := range map[string]*recorder{"a": a.rec, "b": b.rec} {
		r.mu.Lock()
		wills := len(r.wills)
		var downs []string
		for _, p := range r.presence {
			if strings.Contains(p, `"reason":"node_down"`) {
				downs = append(downs, p)
			}
		}
		r.mu.Unlock()
		if wills != 0 || len(downs) != 0 {
			t.Errorf("node %s reaped a live peer after an outage everyone had: %d wills, presence %v", name, wills, downs)
		}
	}
}

// A claimed will whose publish fails (the message stream has no leader
// yet after a node died) is tried again until it is published: nobody
// else will send it once it is claimed.
func TestClaimedWillIsRetriedUntilPublished(t *testing.T) {
	s := startServer(t)
	const ttl = 800 * time.Millisecond
	a := startNode(t, s, "a", ttl, nil)
	b := startNode(t, s, "b", ttl, nil)
	if _, err := a.c.Claim(context.Background(), Claim{ClientID: "w", User: "alice", Will: &Will{Topic: "status/w", Payload: []byte("offline")}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "b sees a alive", func() bool { return b.c.Alive("a") })
	b.rec.mu.Lock()
	b.rec.failWills = 3
	b.rec.mu.Unlock()
	a.stop(t)
	waitFor(t, 6*ttl+10*time.Second, "the will published after its failed attempts", func() bool { return b.rec.willCount() == 1 })
	b.rec.mu.Lock()
	left := b.rec.failWills
	b.rec.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d failures left: the will was published without going through the failures", left)
	}
}

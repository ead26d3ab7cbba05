package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
)

func enableBridge(c *config.File) { c.Bridge.Enabled = true }

// A bridge socket's wills outlive its node: when the node stops
// heart-beating, a surviving node's reaper publishes them exactly once
// (after their delay), a cleared will is not published, and the dead node
// itself does not send them again when the socket finally drops.
func TestClusterBridgeWillsOfDeadNodeSentOnce(t *testing.T) {
	s := startJetStream(t)
	a := startNode(t, s, "a", enableBridge)
	b := startNode(t, s, "b", enableBridge)
	c := startNode(t, s, "c", enableBridge)
	watchers := map[string]*testutil.Client5{}
	for name, n := range map[string]interface{ MQTTAddr() string }{"a": a.Broker, "b": b.Broker, "c": c.Broker} {
		w := testutil.MustConnect5(t, n.MQTTAddr(), "watch-"+name)
		w.Sub(t, "wills/#", 1)
		watchers[name] = w
	}

	dev, devID := sc(t, a)
	mustOK(t, dev.Invoke("setWill", map[string]any{"channel": "wills/dev", "data": "gone"}), "setWill")
	mustOK(t, dev.Invoke("setWill", map[string]any{"channel": "wills/dev-late", "data": "late", "delaySeconds": 1}), "setWill delayed")
	mustOK(t, dev.Invoke("setWill", map[string]any{"channel": "wills/cleared", "data": "no"}), "setWill cleared")
	mustOK(t, dev.Invoke("clearWill", map[string]any{"channel": "wills/cleared"}), "clearWill")
	testutil.WaitFor(t, 5*time.Second, func() bool { return b.Control.Alive("a") && c.Control.Alive("a") }, "b and c see a")

	// a dies: no more heartbeats, its sockets stay as they are.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := a.Control.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	died := time.Now()

	// The reaper (b or c) publishes the immediate will, then the delayed one.
	got := map[string]time.Time{}
	from := ""
	deadline := time.After(15 * time.Second)
	for len(got) < 2 {
		select {
		case m := <-watchers["b"].Msgs:
			got[m.Topic], from = time.Now(), "b"
		case m := <-watchers["c"].Msgs:
			got[m.Topic], from = time.Now(), "c"
		case m := <-watchers["a"].Msgs:
			t.Fatalf("the dead node published %s", m.Topic)
		case <-deadline:
			t.Fatalf("wills of the dead node's socket not published within 15 s: got %v", got)
		}
	}
	if got["wills/dev"].IsZero() || got["wills/dev-late"].IsZero() {
		t.Fatalf("published %v, want wills/dev and wills/dev-late", got)
	}
	if d := got["wills/dev-late"].Sub(got["wills/dev"]); d < 900*time.Millisecond {
		t.Errorf("delayed will published %v after the immediate one, want about its 1 s delay", d)
	}
	t.Logf("will published by %s %v after the node stopped heart-beating (ttl 2 s)", from, got["wills/dev"].Sub(died).Round(10*time.Millisecond))

	// The socket on the dead node now drops: its node finds the wills
	// claimed and does not send them again.
	_ = dev.Conn().UnderlyingConn().Close()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		for _, s := range a.Presence.List() {
			if s.ID == devID {
				return false
			}
		}
		return true
	}, "socket gone on a")
	// A sentinel on each node comes after anything published before it.
	for name, n := range map[string]interface{ MQTTAddr() string }{"a": a.Broker, "b": b.Broker, "c": c.Broker} {
		testutil.MustConnect5(t, n.MQTTAddr(), "sentinel-"+name).Pub(t, "wills/sentinel", 1, false, "s")
		if m := watchers[name].Next(t); m.Topic != "wills/sentinel" {
			t.Fatalf("node %s published %s %q a second time (or a cleared will)", name, m.Topic, m.Payload)
		}
	}
}

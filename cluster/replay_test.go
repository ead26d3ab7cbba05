package cluster_test

import (
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/cluster/clustertest"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// TestClusterReplayAfterRestart: QoS 1/2 messages acknowledged on n1 while
// n2 is down reach n2's persistent session when n2 restarts on its data
// directory, every one, in order, once.
func TestClusterReplayAfterRestart(t *testing.T) {
	apps, cfgs := threeApps(t)
	n1 := apps[0]
	expiry := uint32(300)
	connect := func(a *app.App, id string) *testutil.Client5 {
		c, _, err := testutil.Connect5(t, testutil.Dial(t, a.Broker.MQTTAddr()), &paho.Connect{ClientID: id, CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// Both sessions subscribe, then n2 stops.
	n2 := apps[1]
	for _, s := range []struct {
		id, topic string
		qos       byte
	}{{"replay1", "x/replay/1", 1}, {"replay2", "x/replay/2", 2}} {
		c := connect(n2, s.id)
		c.Sub(t, s.topic, s.qos)
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	}
	clustertest.StopApp(t, n2)

	pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "replaypub")
	const n = 20
	for _, qos := range []byte{1, 2} {
		for i := range n {
			r := pub.Pub(t, "x/replay/"+strconv.Itoa(int(qos)), qos, false, "m"+strconv.Itoa(i))
			if r == nil || r.ReasonCode >= 0x80 {
				t.Fatalf("QoS %d publish %d on n1 while n2 is down not acknowledged: %+v", qos, i, r)
			}
		}
	}

	n2 = restart(t, cfgs[1])
	t.Run("QoS 1 persistent session receives every message in order", func(t *testing.T) {
		c := connect(n2, "replay1")
		if got := payloads5(t, c, n); !equal(got, seq("m", n)) {
			t.Fatalf("after n2 restarted, the QoS 1 session got %v", got)
		}
	})
	t.Run("QoS 2 exactly once", func(t *testing.T) {
		c := connect(n2, "replay2")
		if got := payloads5(t, c, n); !equal(got, seq("m", n)) {
			t.Fatalf("after n2 restarted, the QoS 2 session got %v", got)
		}
		quiet5(t, c, 300*time.Millisecond, "the QoS 2 session")
		// Another restart: everything was acknowledged, nothing comes again.
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		clustertest.StopApp(t, n2)
		n2 = restart(t, cfgs[1])
		c = connect(n2, "replay2")
		quiet5(t, c, 500*time.Millisecond, "the QoS 2 session after a second restart")
	})
}

// restart starts the node of cfg again (same data directory and NATS
// store) and stops it when the test ends.
func restart(t *testing.T, cfg config.File) *app.App {
	t.Helper()
	a, err := app.New(cfg, clustertest.Logger().With("node", cfg.Cluster.Node))
	if err != nil {
		t.Fatalf("restart %s: %v", cfg.Cluster.Node, err)
	}
	if err := a.Start(); err != nil {
		t.Fatalf("restart %s: %v", cfg.Cluster.Node, err)
	}
	t.Cleanup(func() { clustertest.StopApp(t, a) })
	return a
}

// TestClusterReplayAfterCut: n2 reaches NATS through a link that is cut
// while n1 publishes acknowledged QoS 1 messages; once the link is back,
// n2's subscriber receives them all, in order.
func TestClusterReplayAfterCut(t *testing.T) {
	ns := runNATS(t, -1, t.TempDir())
	link := newLink(t, ns.Addr().String())
	cfgs := clustertest.AppConfigs(t, 2)
	for i, url := range []string{ns.ClientURL(), "nats://" + link.addr()} {
		cfgs[i].Cluster = &cluster.Config{Name: "cut", Node: cfgs[i].Cluster.Node, NATS: &cluster.NATS{URLs: []string{url}},
			StartTimeout: 20 * time.Second, PublishTimeout: 2 * time.Second}
	}
	apps := clustertest.StartApps(t, cfgs)
	sub := testutil.MustConnect5(t, apps[1].Broker.MQTTAddr(), "cutsub")
	sub.Sub(t, "x/cut/#", 1)
	pub := testutil.MustConnect5(t, apps[0].Broker.MQTTAddr(), "cutpub")
	pub.Pub(t, "x/cut/a", 1, false, "before")
	if m := sub.Next(t); string(m.Payload) != "before" {
		t.Fatalf("before the cut n2 got %q", m.Payload)
	}

	link.cut(true)
	clustertest.Eventually(t, 15*time.Second, "n2 to see NATS unreachable", func() bool {
		ok, _ := apps[1].Cluster.Healthy()
		return !ok
	})
	const n = 20
	for i := range n {
		if r := pub.Pub(t, "x/cut/a", 1, false, "m"+strconv.Itoa(i)); r == nil || r.ReasonCode >= 0x80 {
			t.Fatalf("publish %d on n1 during the cut not acknowledged: %+v", i, r)
		}
	}
	quiet5(t, sub, 200*time.Millisecond, "n2's subscriber during the cut")
	link.cut(false)
	if got := payloads5(t, sub, n); !equal(got, seq("m", n)) {
		t.Fatalf("after the link came back n2's subscriber got %v", got)
	}
	quiet5(t, sub, 300*time.Millisecond, "n2's subscriber after the cut")
}

// link is a TCP relay to a NATS server that can be cut (every relayed
// connection closed, new ones refused) and restored.
type link struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	down   bool
	conns  []net.Conn
}

func newLink(t *testing.T, target string) *link {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := &link{ln: ln, target: target}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go l.relay(c)
		}
	}()
	t.Cleanup(func() { _ = ln.Close(); <-done; l.cut(true) })
	return l
}

func (l *link) addr() string { return l.ln.Addr().String() }

func (l *link) relay(c net.Conn) {
	l.mu.Lock()
	if l.down {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	s, err := net.Dial("tcp", l.target)
	if err != nil {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.conns = append(l.conns, c, s)
	l.mu.Unlock()
	go func() { _, _ = io.Copy(s, c); _ = s.Close() }()
	_, _ = io.Copy(c, s)
	_ = c.Close()
}

// cut closes every relayed connection and refuses new ones (down), or
// accepts them again.
func (l *link) cut(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
	if down {
		for _, c := range l.conns {
			_ = c.Close()
		}
		l.conns = nil
	}
}

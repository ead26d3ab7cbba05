package cluster_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

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

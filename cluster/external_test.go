package cluster_test

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/cluster/clustertest"
	"github.com/sockmq/sockmq/internal/testutil"
)

// runNATS runs a standalone JetStream nats-server on 127.0.0.1:port
// (-1: any) with its store in dir.
func runNATS(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, JetStream: true, StoreDir: dir})
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

// Two nodes on an existing NATS server (cluster.nats): messages cross;
// when the server restarts, the nodes reconnect, re-subscribe and carry
// messages again, and QoS 1 is refused while it is down.
func TestExternalNATSAndReconnect(t *testing.T) {
	dir := t.TempDir()
	ns := runNATS(t, -1, dir)
	url := ns.ClientURL()
	cfgs := clustertest.AppConfigs(t, 2)
	for i := range cfgs {
		cfgs[i].Cluster = &cluster.Config{Name: "ext", Node: cfgs[i].Cluster.Node, NATS: &cluster.NATS{URLs: []string{url}},
			StartTimeout: 20 * time.Second, PublishTimeout: 2 * time.Second}
	}
	apps := clustertest.StartApps(t, cfgs)
	sub := testutil.MustConnect5(t, apps[1].Broker.MQTTAddr(), "extsub")
	sub.Sub(t, "e/#", 1)
	pub := testutil.MustConnect5(t, apps[0].Broker.MQTTAddr(), "extpub")
	// Wait for the interest to reach the server: publish until one arrives.
	clustertest.Eventually(t, 10*time.Second, "a first message across nodes", func() bool {
		pub.Pub(t, "e/probe", 0, false, "probe")
		select {
		case <-sub.Msgs:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	drain(sub)
	pub.Pub(t, "e/1", 1, false, "before")
	if m := sub.Next(t); string(m.Payload) != "before" {
		t.Fatalf("got %q", m.Payload)
	}

	p := portOf(t, ns)
	ns.Shutdown()
	ns.WaitForShutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	r, err := pub.Publish(ctx, &paho.Publish{Topic: "e/2", QoS: 1, Payload: []byte("during")})
	cancel()
	if r == nil || r.ReasonCode != 0x80 {
		t.Fatalf("QoS 1 publish while the NATS server is down: %+v, %v; want reason 0x80", r, err)
	}

	runNATS(t, p, dir) // the same server comes back
	clustertest.Eventually(t, 15*time.Second, "both nodes to reconnect", func() bool {
		ok0, _ := apps[0].Cluster.Healthy()
		ok1, _ := apps[1].Cluster.Healthy()
		return ok0 && ok1
	})
	clustertest.Eventually(t, 10*time.Second, "messages across nodes after the reconnect (subscriptions re-sent)", func() bool {
		pub.Pub(t, "e/probe", 0, false, "probe")
		select {
		case <-sub.Msgs:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})
	drain(sub)
	pub.Pub(t, "e/3", 1, false, "after")
	if m := sub.Next(t); string(m.Payload) != "after" {
		t.Fatalf("after reconnect got %q", m.Payload)
	}
}

func portOf(t *testing.T, s *server.Server) int {
	t.Helper()
	return s.Addr().(*net.TCPAddr).Port
}

func drain(c *testutil.Client5) {
	for {
		select {
		case <-c.Msgs:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

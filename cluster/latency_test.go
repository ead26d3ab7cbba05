package cluster_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/sockmq/sockmq/cluster/clustertest"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// TestCrossNodeLatencyReport measures, for BENCHMARKS.md, the delivery
// latency of messages published on node 1 at a fixed rate to a subscriber
// on node 1 (same node) and one on node 2 (cross node), the NATS messages
// each publish costs, and the process CPU per delivery. It runs only with
// SOCKMQ_CLUSTER_BENCH=1 (rate and seconds: SOCKMQ_CLUSTER_BENCH_RATE,
// SOCKMQ_CLUSTER_BENCH_SECONDS; defaults 500 and 5).
func TestCrossNodeLatencyReport(t *testing.T) {
	if os.Getenv("SOCKMQ_CLUSTER_BENCH") != "1" {
		t.Skip("set SOCKMQ_CLUSTER_BENCH=1 to measure cross-node latency")
	}
	rate := envInt("SOCKMQ_CLUSTER_BENCH_RATE", 500)
	secs := envInt("SOCKMQ_CLUSTER_BENCH_SECONDS", 5)
	apps := clustertest.StartApps(t, clustertest.AppConfigs(t, 3))
	for _, qos := range []byte{0, 1} {
		topic := fmt.Sprintf("lat/q%d", qos)
		same := testutil.MustConnect5(t, apps[0].Broker.MQTTAddr(), fmt.Sprintf("same%d", qos))
		same.Sub(t, topic, qos)
		cross := testutil.MustConnect5(t, apps[1].Broker.MQTTAddr(), fmt.Sprintf("cross%d", qos))
		cross.Sub(t, topic, qos)
		clustertest.WaitInterest(t, apps[0], topic, "n2")
		pub := testutil.MustConnect5(t, apps[0].Broker.MQTTAddr(), fmt.Sprintf("latpub%d", qos))
		n := rate * secs
		sameLat, crossLat := make(chan []time.Duration, 1), make(chan []time.Duration, 1)
		go receive(same, n, sameLat)
		go receive(cross, n, crossLat)
		natsBefore := natsMsgs(apps)
		outBefore := metric(t, apps[0], "sockmq_cluster_messages_out_total")
		cpuBefore := cpuTime()
		interval := time.Second / time.Duration(rate)
		start := time.Now()
		for i := range n {
			if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: qos, Payload: []byte(strconv.FormatInt(time.Now().UnixNano(), 10))})
			cancel()
			if err != nil {
				t.Fatalf("publish %d: %v", i, err)
			}
		}
		sl, cl := <-sameLat, <-crossLat
		cpu := cpuTime() - cpuBefore
		natsDelta := natsMsgs(apps) - natsBefore
		outDelta := metric(t, apps[0], "sockmq_cluster_messages_out_total") - outBefore
		t.Logf("QoS %d, %d msg/s for %ds (%d messages), publisher on n1:", qos, rate, secs, n)
		t.Logf("  same node  (n1): received %d, p50 %s, p99 %s, max %s", len(sl), pct(sl, 50), pct(sl, 99), pct(sl, 100))
		t.Logf("  cross node (n2): received %d, p50 %s, p99 %s, max %s", len(cl), pct(cl, 50), pct(cl, 99), pct(cl, 100))
		t.Logf("  NATS publishes by n1 per message: %.2f; NATS server messages (in+out, 3 servers, routes and JetStream included) per message: %.1f",
			outDelta/float64(n), float64(natsDelta)/float64(n))
		t.Logf("  process CPU (3 nodes + clients in one process): %s, %.1f µs per delivery (2 deliveries per message)",
			cpu, float64(cpu.Microseconds())/float64(2*n))
		if len(cl) != n || len(sl) != n {
			t.Errorf("lost messages: same %d, cross %d of %d", len(sl), len(cl), n)
		}
	}
}

func receive(c *testutil.Client5, n int, out chan<- []time.Duration) {
	lat := make([]time.Duration, 0, n)
	for len(lat) < n {
		select {
		case m := <-c.Msgs:
			ns, _ := strconv.ParseInt(string(m.Payload), 10, 64)
			lat = append(lat, time.Duration(time.Now().UnixNano()-ns))
		case <-time.After(10 * time.Second):
			out <- lat
			return
		}
	}
	out <- lat
}

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	i := min(len(s)-1, len(s)*p/100)
	return s[i].Round(10 * time.Microsecond)
}

func natsMsgs(apps []*app.App) int64 {
	var n int64
	for _, a := range apps {
		v, err := a.Cluster.Server().Varz(&server.VarzOptions{})
		if err == nil {
			n += v.InMsgs + v.OutMsgs
		}
	}
	return n
}

func metric(t *testing.T, a *app.App, name string) float64 {
	mfs, err := a.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

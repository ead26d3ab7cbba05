package proctest

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

const nodeTTL = 2 * time.Second

// cluster runs deploy/cluster/three-nodes.sh.
type cluster struct {
	t      *testing.T
	script string
	dir    string
	env    []string
	mqtt   [4]string // by node number
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	c := &cluster{t: t, script: filepath.Join(filepath.Dir(file), "..", "..", "deploy", "cluster", "three-nodes.sh"), dir: t.TempDir()}
	var ports []string
	for i := 0; i < 9; i++ {
		a := testutil.FreeAddr(t)
		ports = append(ports, a[strings.LastIndexByte(a, ':')+1:])
	}
	for n := 1; n <= 3; n++ {
		c.mqtt[n] = "127.0.0.1:" + ports[(n-1)*3]
	}
	c.env = append(os.Environ(), "SOCKMQ="+testutil.Binary(t), "PORTS="+strings.Join(ports, " "), "NODE_TTL="+nodeTTL.String())
	t.Cleanup(func() {
		c.run("stop")
		if t.Failed() {
			for n := 1; n <= 3; n++ {
				b, _ := os.ReadFile(filepath.Join(c.dir, "n"+string(rune('0'+n)), "sockmq.log"))
				t.Logf("n%d log:\n%s", n, tail(string(b), 40))
			}
		}
	})
	c.run("start")
	return c
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (c *cluster) run(args ...string) {
	c.t.Helper()
	cmd := exec.Command(c.script, append([]string{args[0], c.dir}, args[1:]...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		c.t.Fatalf("three-nodes.sh %v: %v\n%s", args, err, out)
	}
}

// watcher collects what a subscriber on one node receives.
type watcher struct{ *testutil.Client5 }

// next returns the next message on a topic matching pred, within d.
func (w watcher) next(d time.Duration, pred func(*paho.Publish) bool) *paho.Publish {
	deadline := time.After(d)
	for {
		select {
		case m := <-w.Msgs:
			if pred(m) {
				return m
			}
		case <-deadline:
			return nil
		}
	}
}

// Three processes; node 2 is killed with SIGKILL. Within node_ttl plus a
// bound, its client's will is published once (seen on node 1), its
// sessions leave presence (reason node_down), the cluster keeps serving,
// and node 2 rejoins on restart without sending the will again.
func TestKilledNodeWillsOnceAndPresenceLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("process-level cluster test")
	}
	c := startCluster(t)
	w := watcher{testutil.MustConnect5(t, c.mqtt[1], "watcher")}
	w.Sub(t, "wills/#", 1)
	w.Sub(t, "t/#", 1)
	w.Sub(t, presence.DisconnectedTopic, 0)

	dev, _, err := testutil.Connect5(t, testutil.Dial(t, c.mqtt[2]), &paho.Connect{ClientID: "dev", CleanStart: true,
		WillMessage: &paho.WillMessage{Topic: "wills/dev", Payload: []byte("gone"), QoS: 1}})
	if err != nil {
		t.Fatal(err)
	}
	_ = dev
	// Presence is cluster-wide: node 3 lists the session on node 2.
	p3 := watcher{testutil.MustConnect5(t, c.mqtt[3], "p3")}
	p3.Sub(t, presence.ClientsFilter, 0)
	doc := p3.next(10*time.Second, func(m *paho.Publish) bool { return m.Topic == presence.ClientTopic("dev") && len(m.Payload) > 0 })
	if doc == nil {
		t.Fatal("node 3 does not list the session connected to node 2 in $presence/clients/+")
	}
	var s presence.Session
	if err := json.Unmarshal(doc.Payload, &s); err != nil || s.Node != "n2" || s.ConnectedAt.IsZero() {
		t.Fatalf("presence document %s: want node n2 and connected_at", doc.Payload)
	}

	killed := time.Now()
	c.run("kill-node", "2")
	bound := nodeTTL + 8*time.Second
	will := w.next(bound, func(m *paho.Publish) bool { return m.Topic == "wills/dev" })
	if will == nil {
		t.Fatalf("the killed node's will was not published within %v", bound)
	}
	t.Logf("will published %v after kill -9 (node_ttl %v)", time.Since(killed).Round(100*time.Millisecond), nodeTTL)
	leave := w.next(bound, func(m *paho.Publish) bool {
		return m.Topic == presence.DisconnectedTopic && strings.Contains(string(m.Payload), `"id":"dev"`)
	})
	if leave == nil || !strings.Contains(string(leave.Payload), `"reason":"node_down"`) {
		t.Fatalf("no presence leave with reason node_down for the killed node's session (got %v)", leave)
	}
	gone := p3.next(bound, func(m *paho.Publish) bool { return m.Topic == presence.ClientTopic("dev") && len(m.Payload) == 0 })
	if gone == nil {
		t.Fatal("the killed node's session stayed in $presence/clients/+")
	}
	t.Logf("session left presence %v after kill -9", time.Since(killed).Round(100*time.Millisecond))

	// The cluster keeps serving across the surviving nodes.
	pub := testutil.MustConnect5(t, c.mqtt[3], "pub")
	pub.Pub(t, "t/after-kill", 1, false, "ok")
	if w.next(10*time.Second, func(m *paho.Publish) bool { return m.Topic == "t/after-kill" }) == nil {
		t.Fatal("a publish on node 3 did not reach node 1 after node 2 died")
	}

	// Node 2 rejoins; the will is not sent a second time.
	c.run("start-node", "2")
	back := testutil.MustConnect5(t, c.mqtt[2], "back")
	back.Pub(t, "t/from-n2", 1, false, "back")
	if w.next(10*time.Second, func(m *paho.Publish) bool { return m.Topic == "t/from-n2" }) == nil {
		t.Fatal("node 2 did not rejoin the cluster after its restart")
	}
	if again := w.next(2*nodeTTL, func(m *paho.Publish) bool { return m.Topic == "wills/dev" }); again != nil {
		t.Fatal("the will was published a second time after the node restarted")
	}
}

package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/cluster/clustertest"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// aclFile: anonymous clients (every client here) may use x/, r/, s/ and
// publish under acl/, but read under acl/ only what their client id names.
const aclFile = `topic readwrite x/#
topic readwrite r/#
topic readwrite s/#
topic write acl/#
pattern read acl/%c/#
`

// threeApps starts three sockmq processes in one cluster, each with the
// ACL above.
func threeApps(t *testing.T) ([]*app.App, []config.File) {
	t.Helper()
	acl := filepath.Join(t.TempDir(), "acl")
	if err := os.WriteFile(acl, []byte(aclFile), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgs := clustertest.AppConfigs(t, 3)
	for i := range cfgs {
		cfgs[i].Auth.ACLFile = acl
	}
	return clustertest.StartApps(t, cfgs), cfgs
}

// collect5 gathers what an MQTT 5 client receives, by payload.
func payloads5(t *testing.T, c *testutil.Client5, n int) []string {
	t.Helper()
	out := make([]string, 0, n)
	for len(out) < n {
		out = append(out, string(c.Next(t).Payload))
	}
	return out
}

func seq(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = prefix + strconv.Itoa(i)
	}
	return out
}

func equal(a, b []string) bool {
	return strings.Join(a, ",") == strings.Join(b, ",")
}

// quiet fails if c receives anything within d (a duplicate).
func quiet5(t *testing.T, c *testutil.Client5, d time.Duration, who string) {
	t.Helper()
	select {
	case m := <-c.Msgs:
		t.Fatalf("%s received an extra message %q on %s", who, m.Payload, m.Topic)
	case <-time.After(d):
	}
}

func TestClusterMessaging(t *testing.T) {
	apps, cfgs := threeApps(t)
	n1, n2, n3 := apps[0], apps[1], apps[2]
	parent := t // what the subtests start lives until the whole test ends

	t.Run("cross-node QoS 0/1/2 to MQTT and bridge, in order, no duplicates", func(t *testing.T) {
		overlap := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "overlap")
		overlap.Sub(t, "x/#", 2)
		overlap.Sub(t, "x/+", 2)
		v3, err := testutil.Connect3(t, n3.Broker.MQTTAddr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		v3.Sub(t, "x/a", 1)
		scSub := testutil.DialSC(t, testutil.SCURL(n3.Broker.HTTPAddr()), nil)
		scSub.Handshake(nil)
		scSub.Subscribe("x/a")
		clustertest.WaitInterest(t, n1, "x/a", "n2", "n3")
		pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "pub")
		const n = 30
		for i := range n {
			pub.Pub(t, "x/a", byte(i%3), false, "m"+strconv.Itoa(i))
		}
		want := seq("m", n)
		if got := payloads5(t, overlap, n); !equal(got, want) {
			t.Fatalf("MQTT 5 subscriber on n2 with overlapping filters got %v, want %v", got, want)
		}
		var got3 []string
		for len(got3) < n {
			got3 = append(got3, string(v3.Next(t).Payload()))
		}
		if !equal(got3, want) {
			t.Fatalf("MQTT 3.1.1 subscriber on n3 got %v", got3)
		}
		for i := range n {
			p := scSub.NextPub("x/a")
			if s := strings.Trim(string(p.Data), `"`); s != want[i] {
				t.Fatalf("bridge subscriber on n3: message %d is %s, want %s", i, p.Data, want[i])
			}
		}
		quiet5(t, overlap, 300*time.Millisecond, "n2's overlapping subscriber")

		// The bridge publishes on n3; MQTT on n2 receives.
		scPub := testutil.DialSC(t, testutil.SCURL(n3.Broker.HTTPAddr()), nil)
		scPub.Handshake(nil)
		if r := scPub.Invoke("#publish", map[string]any{"channel": "x/b", "data": "from-bridge"}); r.Error != nil {
			t.Fatalf("bridge publish: %s", r.Error)
		}
		if m := overlap.Next(t); m.Topic != "x/b" || !strings.Contains(string(m.Payload), "from-bridge") {
			t.Fatalf("MQTT on n2 got %s %q from the bridge on n3", m.Topic, m.Payload)
		}
		quiet5(t, overlap, 200*time.Millisecond, "n2's overlapping subscriber")
	})

	t.Run("ACL at delivery on the receiving node", func(t *testing.T) {
		bob := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "bob")
		if rc := bob.Sub(t, "acl/#", 1); rc[0] >= 0x80 {
			t.Fatalf("bob's subscription refused: %x", rc)
		}
		clustertest.WaitInterest(t, n1, "acl/bob/1", "n2")
		pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "aclpub")
		pub.Pub(t, "acl/alice/1", 1, false, "for alice")
		pub.Pub(t, "acl/bob/1", 1, false, "for bob")
		if m := bob.Next(t); m.Topic != "acl/bob/1" {
			t.Fatalf("bob on n2 received %s (%q): the ACL refuses it", m.Topic, m.Payload)
		}
		quiet5(t, bob, 200*time.Millisecond, "bob")
	})

	t.Run("shared subscription: each message to one member cluster-wide", func(t *testing.T) {
		var members []*testutil.Client5
		for i, a := range apps {
			c := testutil.MustConnect5(t, a.Broker.MQTTAddr(), fmt.Sprintf("member%d", i))
			c.Sub(t, "$share/g/s/#", 1)
			members = append(members, c)
		}
		clustertest.WaitInterest(t, n2, "s/1", "n1", "n3")
		pub := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "sharepub")
		const n = 60
		for i := range n {
			pub.Pub(t, "s/"+strconv.Itoa(i%4), 1, false, strconv.Itoa(i))
		}
		seen := map[string]int{}
		per := make([]int, len(members))
		deadline := time.After(10 * time.Second)
		for total := 0; total < n; {
			select {
			case m := <-members[0].Msgs:
				seen[string(m.Payload)]++
				per[0]++
			case m := <-members[1].Msgs:
				seen[string(m.Payload)]++
				per[1]++
			case m := <-members[2].Msgs:
				seen[string(m.Payload)]++
				per[2]++
			case <-deadline:
				t.Fatalf("only %d of %d shared messages arrived (per member %v)", total, n, per)
			}
			total++
		}
		for i := range n {
			if seen[strconv.Itoa(i)] != 1 {
				t.Fatalf("message %d delivered %d times (per member %v)", i, seen[strconv.Itoa(i)], per)
			}
		}
		for i, c := range members {
			quiet5(t, c, 100*time.Millisecond, fmt.Sprintf("member %d", i))
		}
		t.Logf("shared deliveries per member (n1, n2, n3): %v", per)
	})

	t.Run("retained across nodes, read-your-writes, and for a node that starts later", func(t *testing.T) {
		pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "retpub")
		pub.Pub(t, "r/1", 1, true, "kept")
		// Right after the acknowledgement on n1, a subscriber on n2 gets it.
		sub := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "retsub")
		sub.Sub(t, "r/#", 1)
		if m := sub.Next(t); m.Topic != "r/1" || string(m.Payload) != "kept" || !m.Retain {
			t.Fatalf("subscriber on n2 got %s %q retain=%v", m.Topic, m.Payload, m.Retain)
		}
		// Cleared on n2, gone on n1.
		sub.Pub(t, "r/1", 1, true, "")
		late := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "retlate")
		late.Sub(t, "r/#", 1)
		quiet5(t, late, 200*time.Millisecond, "a subscriber after the retained message was cleared")

		// n3 is down while r/2 is retained; restarted, it has it.
		clustertest.StopApp(t, n3)
		pub.Pub(t, "r/2", 1, true, "while n3 was down")
		restarted := clustertest.StartApps(parent, cfgs[2:])[0]
		apps[2] = restarted
		c := testutil.MustConnect5(t, restarted.Broker.MQTTAddr(), "retn3")
		c.Sub(t, "r/#", 1)
		if m := c.Next(t); m.Topic != "r/2" || string(m.Payload) != "while n3 was down" {
			t.Fatalf("restarted n3 gave %s %q", m.Topic, m.Payload)
		}
		quiet5(t, c, 200*time.Millisecond, "the subscriber on restarted n3")
	})

	t.Run("a will published on one node reaches another", func(t *testing.T) {
		watcher := testutil.MustConnect5(t, n2.Broker.MQTTAddr(), "willwatcher")
		watcher.Sub(t, "x/will/#", 1)
		clustertest.WaitInterest(t, n1, "x/will/dev", "n2")
		dev, _, err := testutil.Connect5(t, testutil.Dial(t, n1.Broker.MQTTAddr()), &paho.Connect{ClientID: "dev", CleanStart: true,
			WillMessage: &paho.WillMessage{Topic: "x/will/dev", QoS: 1, Payload: []byte("dev died")}})
		if err != nil {
			t.Fatal(err)
		}
		dev.Drop()
		if m := watcher.Next(t); m.Topic != "x/will/dev" || string(m.Payload) != "dev died" {
			t.Fatalf("watcher on n2 got %s %q", m.Topic, m.Payload)
		}
		quiet5(t, watcher, 200*time.Millisecond, "the will watcher")
	})

	t.Run("QoS 1 from another node is queued for an offline persistent session", func(t *testing.T) {
		expiry := uint32(300)
		connect := func() *testutil.Client5 {
			c, _, err := testutil.Connect5(t, testutil.Dial(t, n2.Broker.MQTTAddr()), &paho.Connect{ClientID: "offline", CleanStart: false,
				Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		c := connect()
		c.Sub(t, "x/queued", 1)
		clustertest.WaitInterest(t, n1, "x/queued", "n2")
		_ = c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		pub := testutil.MustConnect5(t, n1.Broker.MQTTAddr(), "queuepub")
		for i := range 3 {
			pub.Pub(t, "x/queued", 1, false, "q"+strconv.Itoa(i))
		}
		c = connect()
		if got := payloads5(t, c, 3); !equal(got, seq("q", 3)) {
			t.Fatalf("the persistent session on n2 got %v after reconnecting", got)
		}
	})

	t.Run("health and metrics report the cluster", func(t *testing.T) {
		for _, a := range []*app.App{n1, n2} {
			clustertest.Eventually(t, 10*time.Second, "peers in /healthz", func() bool {
				h := health(t, a)
				c, _ := h["cluster"].(map[string]any)
				peers, _ := c["peers"].([]any)
				return h["status"] == "ok" && c["connected"] == true && len(peers) == 2
			})
		}
		body := get(t, "http://"+n1.Broker.HTTPAddr()+"/metrics")
		for _, want := range []string{"sockmq_cluster_messages_out_total{class=\"jetstream\"}", "sockmq_cluster_messages_in_total", "sockmq_cluster_peers 2", "sockmq_cluster_nats_rtt_seconds"} {
			if !strings.Contains(body, want) {
				t.Errorf("/metrics lacks %s", want)
			}
		}
	})
	t.Run("QoS 1/2 refused while NATS is unreachable, local QoS 0 continues", func(t *testing.T) {
		n3 := apps[2]
		local := testutil.MustConnect5(t, n3.Broker.MQTTAddr(), "local")
		local.Sub(t, "x/local", 0)
		v5 := testutil.MustConnect5(t, n3.Broker.MQTTAddr(), "cut5")
		v3, err := testutil.Connect3(t, n3.Broker.MQTTAddr(), nil)
		if err != nil {
			t.Fatal(err)
		}
		n3.Cluster.Server().Shutdown() // n3 loses NATS; the others keep their quorum
		clustertest.Eventually(t, 10*time.Second, "n3's /healthz to report the cluster unreachable", func() bool {
			h := health(t, n3)
			c, _ := h["cluster"].(map[string]any)
			return h["status"] == "cluster unavailable" && c["connected"] == false
		})
		for _, qos := range []byte{1, 2} {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			r, err := v5.Publish(ctx, &paho.Publish{Topic: "x/a", QoS: qos, Payload: []byte("unstored")})
			cancel()
			if r == nil || r.ReasonCode != 0x80 {
				t.Fatalf("MQTT 5 QoS %d publish while NATS is down: response %+v, %v; want reason 0x80", qos, r, err)
			}
		}
		tok := v3.Publish("x/a", 1, false, "unstored")
		tok.WaitTimeout(5 * time.Second)
		clustertest.Eventually(t, 5*time.Second, "the MQTT 3.1.1 publisher to be disconnected without PUBACK", func() bool {
			return !v3.IsConnectionOpen()
		})
		if tok.Error() == nil && tok.WaitTimeout(0) {
			t.Fatalf("MQTT 3.1.1 QoS 1 publish while NATS is down was acknowledged")
		}
		v5.Pub(t, "x/local", 0, false, "still local")
		if m := local.Next(t); string(m.Payload) != "still local" {
			t.Fatalf("local QoS 0 delivery on n3: %q", m.Payload)
		}
		if body := get(t, "http://"+n3.Broker.HTTPAddr()+"/metrics"); !strings.Contains(body, "sockmq_cluster_publish_refused_total 3") {
			t.Errorf("/metrics on n3 does not count 3 refused publishes:\n%s", grepLines(body, "sockmq_cluster"))
		}
	})
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func health(t *testing.T, a *app.App) map[string]any {
	t.Helper()
	var h map[string]any
	if err := json.Unmarshal([]byte(get(t, "http://"+a.Broker.HTTPAddr()+"/healthz")), &h); err != nil {
		t.Fatal(err)
	}
	return h
}

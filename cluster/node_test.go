package cluster_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/cluster/clustertest"
)

// Three embedded nodes form one JetStream cluster: a replicated bucket
// written on one node is read on the others, and core messages cross.
func TestEmbeddedThreeNodes(t *testing.T) {
	nodes := clustertest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, n := range nodes {
		if ok, why := n.Healthy(); !ok {
			t.Fatalf("node %s unhealthy: %s", n.NodeName(), why)
		}
		if n.Server() == nil || n.ClusterName() != nodes[0].ClusterName() {
			t.Fatalf("node %s: embedded server %v, cluster %q", n.NodeName(), n.Server(), n.ClusterName())
		}
	}
	kv, err := nodes[0].JetStream().CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "probe", Replicas: 3})
	if err != nil {
		t.Fatalf("create R3 bucket: %v", err)
	}
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes[1:] {
		kv2, err := n.JetStream().KeyValue(ctx, "probe")
		if err != nil {
			t.Fatal(err)
		}
		e, err := kv2.Get(ctx, "k")
		if err != nil || string(e.Value()) != "v" {
			t.Fatalf("node %s reads %v, %v", n.NodeName(), e, err)
		}
	}
	sub, err := nodes[2].Conn().SubscribeSync("x.y")
	if err != nil {
		t.Fatal(err)
	}
	clustertest.Eventually(t, 10*time.Second, "a message from n1 on n3", func() bool {
		_ = nodes[0].Conn().Publish("x.y", []byte("hi"))
		m, err := sub.NextMsg(50 * time.Millisecond)
		return err == nil && string(m.Data) == "hi"
	})
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  cluster.Config
		want string // substring of the error; "" = valid
	}{
		{"embedded loopback", cluster.Config{Name: "c", Node: "n1", Embedded: &cluster.Embedded{Listen: "127.0.0.1:6222", Routes: []string{"nats://127.0.0.1:6222"}}}, ""},
		{"no mode", cluster.Config{Name: "c", Node: "n1"}, "cluster.embedded: set cluster.embedded"},
		{"both modes", cluster.Config{Name: "c", Node: "n1", Embedded: &cluster.Embedded{Listen: "127.0.0.1:1", Routes: []string{"nats://a:1"}}, NATS: &cluster.NATS{URLs: []string{"nats://a:4222"}}}, "exclusive"},
		{"public listen without auth", cluster.Config{Name: "c", Node: "n1", Embedded: &cluster.Embedded{Listen: "0.0.0.0:6222", Routes: []string{"nats://10.0.0.1:6222"}}}, "cluster.embedded.auth: required because embedded.listen 0.0.0.0:6222 is not a loopback address"},
		{"public listen with auth", cluster.Config{Name: "c", Node: "n1", Embedded: &cluster.Embedded{Listen: "0.0.0.0:6222", Routes: []string{"nats://10.0.0.1:6222"}, Auth: cluster.RouteAuth{User: "r", Password: "secret"}}}, ""},
		{"bad name", cluster.Config{Name: "a.b", Node: "n1", NATS: &cluster.NATS{URLs: []string{"nats://a:4222"}}}, "cluster.name"},
		{"bad url", cluster.Config{Name: "c", Node: "n1", NATS: &cluster.NATS{URLs: []string{"http://a"}}}, "cluster.nats.urls[0]"},
		{"no routes", cluster.Config{Name: "c", Node: "n1", Embedded: &cluster.Embedded{Listen: "127.0.0.1:6222"}}, "cluster.embedded.routes"},
	}
	for _, tc := range cases {
		err := tc.cfg.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

// A NATS server without JetStream is refused with a clear message.
func TestRefusesServerWithoutJetStream(t *testing.T) {
	url := clustertest.PlainServer(t, false)
	_, err := cluster.Start(context.Background(), cluster.Config{Name: "c", Node: "n1", NATS: &cluster.NATS{URLs: []string{url}}, StartTimeout: 10 * time.Second}, clustertest.Logger())
	if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), "JetStream is not enabled") {
		t.Fatalf("start against a server without JetStream: %v", err)
	}
	url = clustertest.PlainServer(t, true)
	n, err := cluster.Start(context.Background(), cluster.Config{Name: "c", Node: "n1", NATS: &cluster.NATS{URLs: []string{url}}, StartTimeout: 10 * time.Second}, clustertest.Logger())
	if err != nil {
		t.Fatalf("start against a JetStream server: %v", err)
	}
	_ = n.Shutdown(context.Background())
	_ = n.Shutdown(context.Background()) // idempotent
}

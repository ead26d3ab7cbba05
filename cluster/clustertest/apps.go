package clustertest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
)

// AuthKey is the bridge signing key the apps of StartApps share.
const AuthKey = "clustertest-shared-bridge-key-0123456789"

// AppConfigs returns the configurations of n sockmq processes forming a
// cluster: MQTT and HTTP on 127.0.0.1 port 0, persistence in a temporary
// directory, the bridge enabled with a shared AuthKey, and the embedded
// NATS nodes of Configs.
func AppConfigs(t testing.TB, n int) []config.File {
	t.Helper()
	ccs := Configs(t, n)
	out := make([]config.File, n)
	for i := range out {
		cfg := config.Default()
		cfg.Listeners.MQTT.Address = "127.0.0.1:0"
		cfg.Listeners.HTTP.Address = "127.0.0.1:0"
		cfg.Persistence.DataDir = t.TempDir()
		cfg.Bridge.Enabled = true
		cfg.Bridge.AuthKey = AuthKey
		cfg.Bridge.PingInterval = 500 * time.Millisecond
		cfg.Bridge.PingTimeout = 5 * time.Second
		cc := ccs[i]
		cfg.Cluster = &cc
		out[i] = cfg
	}
	return out
}

// StartApps starts one sockmq process (internal/app) per configuration,
// together, and shuts them down when the test ends.
func StartApps(t testing.TB, cfgs []config.File) []*app.App {
	t.Helper()
	apps := make([]*app.App, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, cfg := range cfgs {
		if err := cfg.Validate(); err != nil {
			t.Fatalf("node %d config: %v", i+1, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			a, err := app.New(cfg, Logger().With("node", cfg.Cluster.Node))
			if err == nil {
				if err = a.Start(); err != nil {
					a = nil
				}
			}
			apps[i], errs[i] = a, err
		}()
	}
	wg.Wait()
	for i, a := range apps {
		if a == nil {
			t.Fatalf("start node %d: %v", i+1, errs[i])
		}
		t.Cleanup(func() { StopApp(t, a) })
	}
	return apps
}

// StopApp shuts a down (idempotent).
func StopApp(t testing.TB, a *app.App) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
}

// WaitInterest waits until the NATS server of a's node has learnt, over
// its routes, that each of the named nodes subscribes to the core subject
// of topic: a message published on a after that reaches those nodes.
func WaitInterest(t testing.TB, a *app.App, topic string, nodes ...string) {
	t.Helper()
	subj, err := cluster.Subject(a.Cluster.ClusterName(), topic)
	if err != nil {
		t.Fatal(err)
	}
	srv := a.Cluster.Server()
	Eventually(t, 10*time.Second, fmt.Sprintf("interest of %v in %s known to node %s", nodes, topic, a.Cluster.NodeName()), func() bool {
		rz, err := srv.Routez(&server.RoutezOptions{Subscriptions: true})
		if err != nil {
			return false
		}
		have := map[string]bool{}
		for _, r := range rz.Routes {
			for _, s := range r.Subs {
				f, _, _ := strings.Cut(s, " ") // "subject [queue]"
				if server.SubjectMatchesFilter(subj, f) {
					have[r.RemoteName] = true
				}
			}
		}
		for _, n := range nodes {
			if !have[n] {
				return false
			}
		}
		return true
	})
}

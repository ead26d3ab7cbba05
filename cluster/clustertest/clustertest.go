// Package clustertest starts in-process sockmq cluster nodes (embedded
// nats-servers with routes and JetStream) on 127.0.0.1 for tests.
//
// Concurrency: the helpers are called from a test's goroutine; the nodes
// they return are safe for concurrent use and are shut down by t.Cleanup.
package clustertest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/sockmq/sockmq/cluster"
)

// Configs returns the configurations of n embedded nodes named n1..nN of a
// cluster with a name unique to the test, with route listeners on free
// loopback ports (each node's routes list every node, itself included)
// and JetStream stores under t.TempDir().
func Configs(t testing.TB, n int) []cluster.Config {
	t.Helper()
	ports := freePorts(t, n)
	routes := make([]string, n)
	for i, p := range ports {
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", p)
	}
	dir := t.TempDir()
	name := fmt.Sprintf("t%d", time.Now().UnixNano()%1e9)
	out := make([]cluster.Config, n)
	for i := range out {
		out[i] = cluster.Config{
			Name: name,
			Node: fmt.Sprintf("n%d", i+1),
			Embedded: &cluster.Embedded{
				Listen:   fmt.Sprintf("127.0.0.1:%d", ports[i]),
				Routes:   append([]string(nil), routes...),
				StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			},
			StartTimeout:   60 * time.Second,
			PublishTimeout: 5 * time.Second,
		}
	}
	return out
}

// freePorts finds n free TCP ports on 127.0.0.1 (nats-server routes need
// their peers' ports before they start).
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	lns := make([]net.Listener, n)
	ports := make([]int, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("free port: %v", err)
		}
		lns[i] = ln
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	for _, ln := range lns {
		_ = ln.Close()
	}
	return ports
}

// Logger is the logger nodes use in tests: warnings and errors only,
// unless SOCKMQ_TEST_LOG=debug.
func Logger() *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("SOCKMQ_TEST_LOG") == "debug" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// StartNodes starts the nodes of cfgs together (a JetStream cluster needs
// a quorum before any node's start-up completes) and shuts them down when
// the test ends.
func StartNodes(t testing.TB, cfgs []cluster.Config) []*cluster.Node {
	t.Helper()
	nodes := make([]*cluster.Node, len(cfgs))
	errs := make([]error, len(cfgs))
	var wg sync.WaitGroup
	for i, c := range cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nodes[i], errs[i] = cluster.Start(context.Background(), c, Logger().With("node", c.Node))
		}()
	}
	wg.Wait()
	for i, n := range nodes {
		if n != nil {
			t.Cleanup(func() { shutdown(t, n) })
		} else {
			t.Fatalf("start node %s: %v", cfgs[i].Node, errs[i])
		}
	}
	return nodes
}

// Start starts an n-node cluster (see Configs and StartNodes).
func Start(t testing.TB, n int) []*cluster.Node {
	t.Helper()
	return StartNodes(t, Configs(t, n))
}

func shutdown(t testing.TB, n *cluster.Node) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.Shutdown(ctx); err != nil {
		t.Errorf("shutdown node %s: %v", n.NodeName(), err)
	}
}

// Eventually polls cond every 20ms until it holds or the timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// PlainServer runs a standalone nats-server on a free loopback port (with
// or without JetStream) and returns its client URL; it stops with the test.
func PlainServer(t testing.TB, jetStream bool) string {
	t.Helper()
	opts := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, JetStream: jetStream, StoreDir: t.TempDir()}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s.ClientURL()
}

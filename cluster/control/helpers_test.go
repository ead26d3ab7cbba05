package control

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startServer runs a JetStream nats-server on a random loopback port.
func startServer(t *testing.T) *server.Server {
	t.Helper()
	return startServerAt(t, -1, t.TempDir())
}

// startServerAt runs a JetStream nats-server on port (-1: random) with its
// store in dir.
func startServerAt(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir,
		NoLog: true, NoSigs: true,
	})
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

// recorder collects what a controller's hooks were called with.
type recorder struct {
	mu        sync.Mutex
	takenOver map[string]uint64
	wills     []Will
	presence  []string // topic + " " + payload
	deny      bool
	rejoined  int
	failWills int // PublishWill fails this many more times
}

func (r *recorder) hooks(files map[string]string) Hooks {
	return Hooks{
		TakenOver: func(id string, epoch uint64) {
			r.mu.Lock()
			r.takenOver[id] = epoch
			r.mu.Unlock()
		},
		PublishWill: func(w Will) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.failWills > 0 {
				r.failWills--
				return errors.New("test: message not stored")
			}
			r.wills = append(r.wills, w)
			return nil
		},
		MayWrite: func(string, string, string) bool {
			r.mu.Lock()
			defer r.mu.Unlock()
			return !r.deny
		},
		PublishPresence: func(topic string, payload []byte, _ bool) error {
			r.mu.Lock()
			r.presence = append(r.presence, topic+" "+string(payload))
			r.mu.Unlock()
			return nil
		},
		FileHashes: func() map[string]string { return files },
		Rejoined: func() {
			r.mu.Lock()
			r.rejoined++
			r.mu.Unlock()
		},
	}
}

func (r *recorder) willCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.wills)
}

// node is one controller under test.
type node struct {
	c   *Controller
	rec *recorder
	nc  *nats.Conn
}

func startNode(t *testing.T, s *server.Server, name string, ttl time.Duration, files map[string]string) *node {
	t.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{takenOver: make(map[string]uint64)}
	c, err := New(context.Background(), Config{
		JetStream: js, Cluster: "test", Node: name, NodeTTL: ttl, Timeout: time.Second, Hooks: rec.hooks(files),
	}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{c: c, rec: rec, nc: nc}
	t.Cleanup(func() { n.stop(t) })
	return n
}

// stop ends the controller and its connection (a node that died).
//
// The bound is generous: a NATS request in flight when the controller stops
// ends with its context, but on a loaded two-core CI run with -race the
// goroutines of a node that has just been through an outage were seen to
// take a little over 5 s to wind down (no goroutine of the controller was
// left when the stacks were dumped).
func (n *node) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := n.c.Shutdown(ctx); err != nil {
		buf := make([]byte, 1<<20)
		t.Log(string(buf[:runtime.Stack(buf, true)]))
		t.Error(err)
	}
	n.nc.Close()
}

// waitFor polls cond until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package bridge_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// stack is a running broker with the bridge mounted on its HTTP listener.
type stack struct {
	t      testing.TB
	b      *broker.Server
	h      *bridge.Handler
	reg    *prometheus.Registry
	auth   *auth.Service
	dir    string
	closed []bridge.CloseInfo
	obs    *recorder
}

// recorder is an Observer that records what it is told.
type recorder struct {
	mu     sync.Mutex
	opened []string
	open   map[string]bool
	closed map[string]bridge.CloseInfo
}

func (r *recorder) SocketOpened(s *bridge.Session) {
	r.mu.Lock()
	if r.open == nil {
		r.open = map[string]bool{}
	}
	if r.open[s.ID()] {
		panic("SocketOpened twice without SocketClosed for " + s.ID())
	}
	r.open[s.ID()] = true
	r.opened = append(r.opened, s.ID())
	r.mu.Unlock()
}

func (r *recorder) SocketClosed(s *bridge.Session, info bridge.CloseInfo) {
	r.mu.Lock()
	if r.closed == nil {
		r.closed = map[string]bridge.CloseInfo{}
	}
	if !r.open[s.ID()] {
		panic("SocketClosed without SocketOpened for " + s.ID())
	}
	delete(r.open, s.ID())
	r.closed[s.ID()] = info
	r.mu.Unlock()
}

// everOpened reports whether SocketOpened was called for id.
func (r *recorder) everOpened(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range r.opened {
		if o == id {
			return true
		}
	}
	return false
}

func (r *recorder) closeOf(id string) (bridge.CloseInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c, ok := r.closed[id]
	return c, ok
}

// testConfig is the bridge configuration tests start from: fast timeouts.
func testConfig() bridge.Config {
	c := bridge.Defaults()
	c.PingInterval = time.Second
	c.PingTimeout = 5 * time.Second
	c.HandshakeTimeout = 5 * time.Second
	c.WriteTimeout = 2 * time.Second
	return c
}

// startStack starts a broker and the bridge. authz may be nil.
func startStack(t *testing.T, cfg bridge.Config, authz *auth.Service) *stack {
	t.Helper()
	return startStackFull(t, cfg, authz, nil, nil)
}

// startStackOpts is startStack with a hook that may change the bridge's
// options (after the defaults are set) before it is created.
func startStackOpts(t *testing.T, cfg bridge.Config, authz *auth.Service, mutate func(*bridge.Options)) *stack {
	return startStackFull(t, cfg, authz, nil, mutate)
}

// startStackWith is startStack with the broker as the bridge sees it
// passed through wrap (nil: unchanged).
func startStackWith(t *testing.T, cfg bridge.Config, authz *auth.Service, wrap func(bridge.Broker) bridge.Broker) *stack {
	return startStackFull(t, cfg, authz, wrap, nil)
}

// startStackFull starts a broker and a bridge: wrap changes the broker as
// the bridge sees it, mutate the bridge's options (both may be nil).
func startStackFull(t testing.TB, cfg bridge.Config, authz *auth.Service, wrap func(bridge.Broker) bridge.Broker, mutate func(*bridge.Options)) *stack {
	t.Helper()
	st := &stack{t: t, reg: prometheus.NewRegistry(), auth: authz, obs: &recorder{}}
	bcfg := testutil.BrokerConfig(t)
	st.dir = bcfg.Persistence.DataDir
	var ba broker.Authorizer
	var opts bridge.Options
	if authz != nil {
		ba = authz
		opts.Authorizer = app.BridgeAuthorizer(authz)
	}
	b, err := broker.New(bcfg, ba, st.reg, testutil.Logger(t))
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	opts.Broker = app.BridgeBroker(b)
	if wrap != nil {
		opts.Broker = wrap(opts.Broker)
	}
	opts.Registerer = st.reg
	opts.DataDir = st.dir
	opts.Observer = st.obs
	if mutate != nil {
		mutate(&opts)
	}
	h, err := bridge.New(cfg, opts, testutil.Logger(t))
	if err != nil {
		t.Fatalf("bridge.New: %v", err)
	}
	for _, p := range h.Paths() {
		b.Handle(p, h)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	st.b, st.h = b, h
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("bridge.Shutdown: %v", err)
		}
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("broker.Shutdown: %v", err)
		}
	})
	return st
}

// counter reads a counter or gauge from the stack's registry.
func (st *stack) metric(name string) float64 {
	mfs, err := st.reg.Gather()
	if err != nil {
		st.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			sum += metricValue(m)
		}
		return sum
	}
	st.t.Fatalf("metric %s not registered", name)
	return 0
}

// metricWith reads the series of a metric whose label has value.
func (st *stack) metricWith(name, label, value string) float64 {
	mfs, err := st.reg.Gather()
	if err != nil {
		st.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return metricValue(m)
				}
			}
		}
	}
	return 0
}

func metricValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return 0
}

// scClient is the raw SocketCluster test client.
type scClient = testutil.SCClient

// dial opens a socket to the stack's bridge without handshaking.
func (st *stack) dial(t testing.TB, opts ...func(*scClient)) *scClient {
	t.Helper()
	return testutil.DialSC(t, "ws://"+st.b.HTTPAddr()+"/socketcluster/", nil, opts...)
}

// connect dials and handshakes.
func (st *stack) connect(t testing.TB, opts ...func(*scClient)) *scClient {
	t.Helper()
	c := st.dial(t, opts...)
	c.Handshake(nil)
	return c
}

// writeFile writes content to dir/name.
func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// passwd returns password-file content for users (name → password).
func passwd(t testing.TB, users map[string]string) string {
	t.Helper()
	var b strings.Builder
	for u, pw := range users {
		h, err := auth.HashPassword(pw, 1)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s:%s\n", u, h)
	}
	return b.String()
}

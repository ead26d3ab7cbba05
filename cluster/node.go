package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MinServerVersion is the oldest nats-server sockmq accepts: per-key TTL
// in JetStream key-value buckets needs 2.11.
const MinServerVersion = "2.11.0"

// ErrRefused wraps every reason Start refuses to run: NATS unreachable,
// JetStream disabled, a server too old.
var ErrRefused = errors.New("cluster: cannot start")

// Node is this process's membership of a sockmq cluster: the embedded
// nats-server (if any) and the NATS connections.
type Node struct {
	cfg  Config
	log  *slog.Logger
	srv  *server.Server // nil when connected to an external cluster
	nc   *nats.Conn
	js   jetstream.JetStream
	boot string // unique per process start: tells restarts apart

	clientUser, clientPass string // the embedded server's client credentials

	disconnects  atomic.Int64
	mu           sync.Mutex
	lastErr      string
	conns        []*nats.Conn // extra connections (Dial), closed on Shutdown
	shutdownOnce sync.Once
}

// Start starts the embedded nats-server (cluster.embedded) or connects to
// the configured NATS cluster (cluster.nats), and checks that JetStream is
// enabled and the server is at least MinServerVersion. It waits up to
// cfg.StartTimeout (or ctx) for JetStream to become usable: a JetStream
// cluster needs a quorum of its nodes, so nodes of a new cluster must be
// started together. Every refusal wraps ErrRefused and says why.
func Start(ctx context.Context, cfg Config, log *slog.Logger) (*Node, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	cfg = cfg.WithDefaults()
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	n := &Node{cfg: cfg, log: log.With("component", "cluster", "node", cfg.Node), boot: nats.NewInbox()[len(nats.InboxPrefix):]}
	if cfg.Embedded != nil {
		if err := n.startServer(); err != nil {
			return nil, fmt.Errorf("%w: embedded nats-server: %w", ErrRefused, err)
		}
	}
	nc, err := n.Dial("sockmq-"+cfg.Node, false)
	if err != nil {
		n.shutdownServer()
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	n.nc = nc
	if err := checkVersion(nc.ConnectedServerVersion()); err != nil {
		n.close()
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		n.close()
		return nil, fmt.Errorf("%w: jetstream: %w", ErrRefused, err)
	}
	n.js = js
	if err := n.waitJetStream(ctx); err != nil {
		n.close()
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	n.log.Info("joined the cluster", "cluster", cfg.Name, "server", nc.ConnectedServerName(),
		"version", nc.ConnectedServerVersion(), "embedded", cfg.Embedded != nil, "replicas", cfg.Replicas)
	return n, nil
}

// startServer runs the embedded nats-server and waits until it accepts
// connections.
func (n *Node) startServer() error {
	e := n.cfg.Embedded
	host, port, err := splitHostPort(e.Listen)
	if err != nil {
		return fmt.Errorf("cluster.embedded.listen: %w", err)
	}
	routes, err := routeURLs(e.Routes, e.Auth)
	if err != nil {
		return err
	}
	opts := &server.Options{
		ServerName: n.cfg.Node,
		JetStream:  true,
		StoreDir:   e.StoreDir,
		NoSigs:     true,
		// The client port is needed for routing to start; without
		// client_listen it is a random loopback port that only this
		// process knows the credentials of.
		Host: "127.0.0.1", Port: -1,
		Username: "sockmq", Password: n.boot + nats.NewInbox(),
		Cluster: server.ClusterOpts{
			Name: n.cfg.Name, Host: host, Port: port,
			Username: e.Auth.User, Password: e.Auth.Password,
		},
		Routes: routes,
	}
	if e.ClientListen != "" {
		if opts.Host, opts.Port, err = splitHostPort(e.ClientListen); err != nil {
			return fmt.Errorf("cluster.embedded.client_listen: %w", err)
		}
		if e.Auth.User != "" {
			opts.Username, opts.Password = e.Auth.User, e.Auth.Password
		}
	}
	n.clientUser, n.clientPass = opts.Username, opts.Password
	if e.Auth.CertFile != "" {
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: e.Auth.CertFile, KeyFile: e.Auth.KeyFile, CaFile: e.Auth.CAFile, Verify: true})
		if err != nil {
			return fmt.Errorf("cluster.embedded.auth: route TLS: %w", err)
		}
		opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = tc, 2
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return err
	}
	s.SetLoggerV2(&natsLogger{log: n.log.With("component", "nats-server")}, n.log.Enabled(context.Background(), slog.LevelDebug), false, false)
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("not ready within 10s (route listener %s)", e.Listen)
	}
	n.srv = s
	return nil
}

// Dial opens another connection to the cluster's NATS with this node's
// options (in-process to the embedded server, or to cfg.NATS.URLs). With
// noEcho, messages this connection publishes are not delivered to its own
// subscriptions. The connection reconnects forever and is closed by
// Shutdown.
func (n *Node) Dial(name string, noEcho bool) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectBufSize(8 << 20),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			n.disconnects.Add(1)
			msg := "NATS connection lost"
			if err != nil {
				msg += ": " + err.Error()
			}
			n.setErr(msg)
			n.log.Warn("NATS connection lost; local delivery continues", "conn", c.Opts.Name, "error", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			n.log.Info("NATS connection restored; subscriptions re-sent", "conn", c.Opts.Name, "server", c.ConnectedServerName())
		}),
		nats.ErrorHandler(func(c *nats.Conn, s *nats.Subscription, err error) {
			subj := ""
			if s != nil {
				subj = s.Subject
			}
			n.log.Warn("NATS asynchronous error", "conn", c.Opts.Name, "subject", subj, "error", err)
		}),
	}
	if noEcho {
		opts = append(opts, nats.NoEcho())
	}
	urls := ""
	if n.srv != nil {
		opts = append(opts, nats.InProcessServer(n.srv), nats.UserInfo(n.clientUser, n.clientPass))
	} else {
		c := n.cfg.NATS
		urls = strings.Join(c.URLs, ",")
		switch {
		case c.Creds != "":
			opts = append(opts, nats.UserCredentials(c.Creds))
		case c.User != "":
			opts = append(opts, nats.UserInfo(c.User, c.Password))
		case c.Token != "":
			opts = append(opts, nats.Token(c.Token))
		}
		if c.CAFile != "" {
			opts = append(opts, nats.RootCAs(c.CAFile))
		}
		if c.CertFile != "" {
			opts = append(opts, nats.ClientCert(c.CertFile, c.KeyFile))
		}
		opts = append(opts, nats.Timeout(5*time.Second), nats.RetryOnFailedConnect(false))
	}
	nc, err := nats.Connect(urls, opts...)
	if err != nil {
		where := "the embedded server"
		if urls != "" {
			where = urls
		}
		return nil, fmt.Errorf("connect to NATS at %s: %w", where, err)
	}
	if n.nc != nil { // the first connection is n.nc itself
		n.mu.Lock()
		n.conns = append(n.conns, nc)
		n.mu.Unlock()
	}
	return nc, nil
}

// waitJetStream waits until the JetStream API answers (a new cluster
// elects its meta leader first); a server without JetStream is refused at
// once.
func (n *Node) waitJetStream(ctx context.Context) error {
	var last error
	for {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := n.js.AccountInfo(actx)
		cancel()
		switch {
		case err == nil:
			return nil
		case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
			return fmt.Errorf("JetStream is not enabled on NATS server %s (%s): sockmq keeps retained messages, sessions and QoS 1/2 messages in JetStream; enable it (server option jetstream: enabled)",
				n.nc.ConnectedServerName(), n.nc.ConnectedUrlRedacted())
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("JetStream did not become available within cluster.start_timeout (%s): %w (a new JetStream cluster needs a majority of its nodes running)", n.cfg.StartTimeout, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkVersion refuses servers older than MinServerVersion.
func checkVersion(v string) error {
	if versionLess(v, MinServerVersion) {
		return fmt.Errorf("NATS server version %s is too old: sockmq needs nats-server %s or newer (per-key TTL in key-value buckets); Debian's nats-server 2.9 is not enough, use cluster.embedded or upgrade", v, MinServerVersion)
	}
	return nil
}

// versionLess compares dotted versions numerically ("2.9.10" < "2.11.0");
// pre-release suffixes are ignored, an unparsable version is "less".
func versionLess(a, b string) bool {
	pa, pb := versionParts(a), versionParts(b)
	if pa == nil {
		return true
	}
	for i := range 3 {
		if pa[i] != pb[i] {
			return pa[i] < pb[i]
		}
	}
	return false
}

func versionParts(v string) []int {
	v = strings.TrimPrefix(v, "v")
	if i := strings.IndexAny(v, "-+"); i >= 0 {
		v = v[:i]
	}
	fs := strings.Split(v, ".")
	if len(fs) < 2 {
		return nil
	}
	out := make([]int, 3)
	for i := 0; i < len(fs) && i < 3; i++ {
		x, err := strconv.Atoi(fs[i])
		if err != nil {
			return nil
		}
		out[i] = x
	}
	return out
}

// Conn is the node's general NATS connection (echo on). The data plane
// uses its own connections.
func (n *Node) Conn() *nats.Conn { return n.nc }

// JetStream is the JetStream context of Conn.
func (n *Node) JetStream() jetstream.JetStream { return n.js }

// NodeName is this node's unique name (cluster.node).
func (n *Node) NodeName() string { return n.cfg.Node }

// ClusterName is the cluster's name (cluster.name).
func (n *Node) ClusterName() string { return n.cfg.Name }

// Boot is a value unique to this process start of the node.
func (n *Node) Boot() string { return n.boot }

// Config returns the node's configuration with defaults applied.
func (n *Node) Config() Config { return n.cfg }

// Server is the embedded nats-server, or nil.
func (n *Node) Server() *server.Server { return n.srv }

// Healthy reports whether the node is connected to NATS; when not, the
// reason.
func (n *Node) Healthy() (bool, string) {
	if n.nc != nil && n.nc.IsConnected() {
		return true, ""
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lastErr == "" {
		return false, "not connected to NATS"
	}
	return false, n.lastErr
}

// Disconnects counts NATS connection losses since start.
func (n *Node) Disconnects() int64 { return n.disconnects.Load() }

func (n *Node) setErr(s string) {
	n.mu.Lock()
	n.lastErr = s
	n.mu.Unlock()
}

// Shutdown closes the connections (flushing what they buffered) and stops
// the embedded server. Safe to call more than once.
func (n *Node) Shutdown(ctx context.Context) error {
	var err error
	n.shutdownOnce.Do(func() {
		done := make(chan struct{})
		go func() {
			defer close(done)
			n.close()
		}()
		select {
		case <-done:
		case <-ctx.Done():
			err = ctx.Err()
		}
	})
	return err
}

func (n *Node) close() {
	n.mu.Lock()
	conns := n.conns
	n.conns = nil
	n.mu.Unlock()
	for _, c := range conns {
		_ = c.FlushTimeout(time.Second)
		c.Close()
	}
	if n.nc != nil {
		_ = n.nc.FlushTimeout(time.Second)
		n.nc.Close()
	}
	n.shutdownServer()
}

func (n *Node) shutdownServer() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
	}
}

// splitHostPort parses host:port with a numeric port (0 = any free port).
func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be a number", addr)
	}
	if port == 0 {
		port = -1 // nats-server: a random port
	}
	return host, port, nil
}

// routeURLs parses the route URLs, adding the shared route credentials to
// those that carry none.
func routeURLs(routes []string, a RouteAuth) ([]*url.URL, error) {
	out := make([]*url.URL, 0, len(routes))
	for i, r := range routes {
		u, err := url.Parse(r)
		if err != nil {
			return nil, fmt.Errorf("cluster.embedded.routes[%d]: %w", i, err)
		}
		if u.User == nil && a.User != "" {
			u.User = url.UserPassword(a.User, a.Password)
		}
		out = append(out, u)
	}
	return out, nil
}

// natsLogger sends the embedded server's log to slog.
type natsLogger struct{ log *slog.Logger }

func (l *natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *natsLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

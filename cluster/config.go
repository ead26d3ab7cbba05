package cluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/sockmq/sockmq/internal/netutil"
)

// Config is the cluster: section of sockmq's configuration. A nil *Config
// (no section) means a single node: nothing here runs.
type Config struct {
	// Name is the cluster's name; nodes with different names never mix
	// (it is part of every subject, bucket and stream name).
	Name string `yaml:"name"`
	// Node is this node's name, unique in the cluster.
	Node string `yaml:"node"`
	// Embedded runs a nats-server inside this process.
	Embedded *Embedded `yaml:"embedded"`
	// NATS connects to an existing NATS cluster instead.
	NATS *NATS `yaml:"nats"`
	// Replicas is the JetStream replica count of the streams and buckets
	// sockmq creates (1-5). 0 means: with embedded, the number of routes
	// capped at 3; with nats, 1.
	Replicas int `yaml:"replicas"`
	// StartTimeout bounds how long start-up waits for NATS and JetStream
	// (a JetStream cluster needs a quorum of its nodes). Default 30s.
	StartTimeout time.Duration `yaml:"start_timeout"`
	// PublishTimeout bounds how long a QoS 1/2 publish or a retained
	// update waits for JetStream before it is refused. Default 5s.
	PublishTimeout time.Duration `yaml:"publish_timeout"`
	// MessageMaxAge is how long QoS 1/2 messages are kept in the cluster's
	// message stream. Default 1h.
	MessageMaxAge time.Duration `yaml:"message_max_age"`
	// NodeTTL is how long a node may go without refreshing its liveness
	// key before the others consider it dead: its sessions leave presence
	// and its clients' wills are published. Default 6s.
	NodeTTL time.Duration `yaml:"node_ttl"`
}

// Embedded configures the embedded nats-server.
type Embedded struct {
	// Listen is the cluster route listener, host:port.
	Listen string `yaml:"listen"`
	// Routes are the route URLs of the cluster's nodes (nats://host:port);
	// the list may include this node itself.
	Routes []string `yaml:"routes"`
	// StoreDir is the JetStream storage directory. Default
	// <persistence.data_dir>/nats when empty (set by the caller).
	StoreDir string `yaml:"store_dir"`
	// ClientListen optionally opens a NATS client listener (host:port) for
	// tools, which log in with Auth.User and Auth.Password (required with
	// it). Empty: the server's client port is a random loopback port whose
	// credentials only this process knows.
	ClientListen string `yaml:"client_listen"`
	// Auth authenticates routes. Required when Listen is not loopback.
	Auth RouteAuth `yaml:"auth"`
}

// RouteAuth authenticates the routes between embedded servers: a shared
// user and password, and/or mutual TLS.
type RouteAuth struct {
	// User and Password are the shared route credentials.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	// CertFile and KeyFile are this node's route certificate; CAFile
	// verifies the peers' certificates (mutual TLS).
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// NATS configures the connection to an existing NATS cluster; the options
// are nats.go's.
type NATS struct {
	// URLs of the cluster's servers.
	URLs []string `yaml:"urls"`
	// Creds is a credentials file (JWT and NKey seed).
	Creds string `yaml:"creds"`
	// User and Password, or Token, authenticate instead of Creds.
	User     string `yaml:"user"`
	Password string `yaml:"password"`
	Token    string `yaml:"token"`
	// CAFile verifies the servers' certificates; CertFile and KeyFile are
	// a client certificate.
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Defaults of the optional keys.
const (
	DefaultStartTimeout   = 30 * time.Second
	DefaultPublishTimeout = 5 * time.Second
	DefaultMessageMaxAge  = time.Hour
)

// nameRE is what cluster and node names may contain: they become NATS
// subject tokens and JetStream names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// WithDefaults returns c with its optional keys filled in.
func (c Config) WithDefaults() Config {
	if c.StartTimeout <= 0 {
		c.StartTimeout = DefaultStartTimeout
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = DefaultPublishTimeout
	}
	if c.MessageMaxAge <= 0 {
		c.MessageMaxAge = DefaultMessageMaxAge
	}
	if c.Replicas == 0 {
		c.Replicas = 1
		if c.Embedded != nil {
			c.Replicas = min(3, max(1, len(c.Embedded.Routes)))
		}
	}
	return c
}

// Validate reports every problem of the section at once; each error names
// its key (cluster.xxx).
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	add := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("cluster.%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if !nameRE.MatchString(c.Name) {
		add("name", "%q must be 1-64 letters, digits, '-' or '_' (it names subjects, streams and buckets)", c.Name)
	}
	if !nameRE.MatchString(c.Node) {
		add("node", "%q must be 1-64 letters, digits, '-' or '_', unique in the cluster", c.Node)
	}
	switch {
	case c.Embedded == nil && c.NATS == nil:
		add("embedded", "set cluster.embedded (run a nats-server in this process) or cluster.nats (connect to an existing NATS cluster)")
	case c.Embedded != nil && c.NATS != nil:
		add("nats", "cluster.embedded and cluster.nats are exclusive: choose one")
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		add("replicas", "%d must be between 1 and 5 (0 = automatic)", c.Replicas)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"start_timeout", c.StartTimeout}, {"publish_timeout", c.PublishTimeout}, {"message_max_age", c.MessageMaxAge}, {"node_ttl", c.NodeTTL}} {
		if d.v < 0 {
			add(d.key, "%s must not be negative", d.v)
		}
	}
	if e := c.Embedded; e != nil {
		if _, _, err := net.SplitHostPort(e.Listen); err != nil {
			add("embedded.listen", "%q must be host:port (the route listener): %v", e.Listen, err)
		} else if !netutil.IsLoopback(e.Listen) && e.Auth.User == "" && e.Auth.CertFile == "" {
			add("embedded.auth", "required because embedded.listen %s is not a loopback address: set auth.user and auth.password (shared by every node) or auth.cert_file, auth.key_file and auth.ca_file", e.Listen)
		}
		if len(e.Routes) == 0 {
			add("embedded.routes", "list the route URLs of the cluster's nodes (nats://host:port, this node may be included)")
		}
		for i, r := range e.Routes {
			if err := checkURL(r, "nats"); err != nil {
				add(fmt.Sprintf("embedded.routes[%d]", i), "%v", err)
			}
		}
		if e.ClientListen != "" {
			if _, _, err := net.SplitHostPort(e.ClientListen); err != nil {
				add("embedded.client_listen", "%q must be host:port: %v", e.ClientListen, err)
			} else if e.Auth.User == "" {
				add("embedded.client_listen", "set embedded.auth.user and password too: they are the credentials of NATS clients on %s (and of the routes)", e.ClientListen)
			}
		}
		if (e.Auth.User == "") != (e.Auth.Password == "") {
			add("embedded.auth", "user and password go together")
		}
		if (e.Auth.CertFile == "") != (e.Auth.KeyFile == "") || (e.Auth.CertFile != "" && e.Auth.CAFile == "") {
			add("embedded.auth", "cert_file, key_file and ca_file go together (mutual TLS between routes)")
		}
	}
	if n := c.NATS; n != nil {
		if len(n.URLs) == 0 {
			add("nats.urls", "list at least one server URL (nats://host:4222 or tls://host:4222)")
		}
		for i, u := range n.URLs {
			if err := checkURL(u, "nats", "tls", "ws", "wss"); err != nil {
				add(fmt.Sprintf("nats.urls[%d]", i), "%v", err)
			}
		}
		methods := 0
		for _, set := range []bool{n.Creds != "", n.User != "", n.Token != ""} {
			if set {
				methods++
			}
		}
		if methods > 1 {
			add("nats", "creds, user/password and token are exclusive: choose one")
		}
		if (n.User == "") != (n.Password == "") {
			add("nats", "user and password go together")
		}
		if (n.CertFile == "") != (n.KeyFile == "") {
			add("nats", "cert_file and key_file go together")
		}
	}
	return errors.Join(errs...)
}

// ResolvePaths makes the section's relative file paths absolute against
// base (the configuration file's directory).
func (c *Config) ResolvePaths(base string) {
	if c == nil {
		return
	}
	var ps []*string
	if e := c.Embedded; e != nil {
		ps = append(ps, &e.StoreDir, &e.Auth.CertFile, &e.Auth.KeyFile, &e.Auth.CAFile)
	}
	if n := c.NATS; n != nil {
		ps = append(ps, &n.Creds, &n.CAFile, &n.CertFile, &n.KeyFile)
	}
	for _, p := range ps {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(base, *p)
		}
	}
}

// Describe is a one-line summary for `sockmq check`.
func (c *Config) Describe() string {
	if c == nil {
		return "off (single node)"
	}
	d := c.WithDefaults()
	if e := c.Embedded; e != nil {
		return fmt.Sprintf("cluster %s, node %s: embedded NATS, routes on %s to %s, JetStream in %s, %d replicas",
			c.Name, c.Node, e.Listen, strings.Join(e.Routes, ", "), e.StoreDir, d.Replicas)
	}
	return fmt.Sprintf("cluster %s, node %s: NATS at %s, %d replicas", c.Name, c.Node, strings.Join(c.NATS.URLs, ", "), d.Replicas)
}

func checkURL(s string, schemes ...string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("%q is not a URL: %w", s, err)
	}
	ok := false
	for _, sc := range schemes {
		ok = ok || u.Scheme == sc
	}
	if !ok || u.Host == "" {
		return fmt.Errorf("%q must look like %s://host:port", s, schemes[0])
	}
	return nil
}

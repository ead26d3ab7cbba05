package control

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/xid"
)

// Defaults of Config.
const (
	DefaultNodeTTL = 6 * time.Second
	DefaultTimeout = 3 * time.Second
	// DefaultRevokedTTL bounds how long a revoked token id is kept when
	// Config.RevokedTTL is zero (the bridge's default token lifetime).
	DefaultRevokedTTL = 24 * time.Hour
)

// ReasonNodeDown is the disconnect reason of the presence events a reaper
// publishes for the sessions of a node that died.
const ReasonNodeDown = "node_down"

// Will is a client's last will as kept in the cluster's will store.
type Will struct {
	ClientID         string `json:"client_id"`
	User             string `json:"user,omitempty"`
	Topic            string `json:"topic"`
	Payload          []byte `json:"payload,omitempty"`
	QoS              byte   `json:"qos,omitempty"`
	Retain           bool   `json:"retain,omitempty"`
	Delay            uint32 `json:"delay,omitempty"`  // MQTT 5 will delay, seconds
	Expiry           uint32 `json:"expiry,omitempty"` // message expiry interval, seconds
	ContentType      string `json:"content_type,omitempty"`
	PayloadFormat    byte   `json:"payload_format,omitempty"`
	HasPayloadFormat bool   `json:"has_payload_format,omitempty"`
}

// Hooks are what the controller calls back into the node. Every field is
// required except FileHashes.
type Hooks struct {
	// TakenOver is called when another node claimed clientID with epoch:
	// the node ends its local connection and session of that client id if
	// theirs is older.
	TakenOver func(clientID string, epoch uint64)
	// PublishWill publishes a reaped will through the local broker.
	PublishWill func(w Will) error
	// MayWrite reports whether user may publish to topic (the ACL, checked
	// again when a reaped will is sent).
	MayWrite func(user, clientID, topic string) bool
	// PublishPresence publishes a presence message (reaper leaves).
	PublishPresence func(topic string, payload []byte, retain bool) error
	// FileHashes returns the hashes of the node's password and ACL files,
	// reported with its heartbeat; nil reports none.
	FileHashes func() map[string]string
	// Rejoined, if set, is called when this node heart-beats again after
	// failing for at least NodeTTL: the other nodes may have reaped it,
	// so it publishes its sessions' presence again.
	Rejoined func()
}

// Config configures a Controller.
type Config struct {
	// JetStream is the node's JetStream context (required).
	JetStream jetstream.JetStream
	// Cluster is the cluster name; bucket names derive from it.
	Cluster string
	// Node is this node's unique name.
	Node string
	// Replicas is the number of replicas of each bucket (1 or 3 in
	// practice; at most the number of JetStream servers).
	Replicas int
	// NodeTTL is how long a node may go without heart-beating before it is
	// considered dead (its sessions leave presence, its wills are sent).
	// It heart-beats every NodeTTL/4.
	NodeTTL time.Duration
	// Timeout bounds each JetStream call.
	Timeout time.Duration
	// RevokedTTL is how long revoked token ids are kept (the bridge's
	// token lifetime).
	RevokedTTL time.Duration
	// Hooks are the node's callbacks.
	Hooks Hooks
}

// Controller is one node's view of the cluster's control state.
type Controller struct {
	cfg      Config
	log      *slog.Logger
	instance string
	started  time.Time

	owners, nodes, wills, presence, revoked jetstream.KeyValue

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu    sync.Mutex
	peers map[string]*peer // by node name, from heartbeats
	// reaping marks dead nodes whose reaping this node runs or ran, by
	// node name and the instance it saw last.
	reaping map[string]string

	startOnce, shutdownOnce sync.Once
	running                 atomic.Bool // Start succeeded

	mirror chan mirrorOp // presence mirror writes, in order

	remote remotePresence // the other nodes' presence documents
}

// peer is what a node learnt from another node's heartbeats.
type peer struct {
	beat     heartbeat
	lastSeen time.Time // local clock
	rev      uint64    // revision of the newest heartbeat seen
}

// heartbeat is the value of a node's liveness key.
type heartbeat struct {
	Node     string            `json:"node"`
	Instance string            `json:"instance"`
	Started  time.Time         `json:"started"`
	Files    map[string]string `json:"files,omitempty"`
}

// ErrUnavailable wraps every error that means the cluster's state could not
// be read or written (NATS unreachable, JetStream without quorum, timeout).
var ErrUnavailable = errors.New("cluster state unavailable")

func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// New opens (creating when missing) the control buckets. Nothing runs
// until Start.
func New(ctx context.Context, cfg Config, log *slog.Logger) (*Controller, error) {
	if log == nil {
		log = slog.Default()
	}
	if cfg.JetStream == nil || cfg.Node == "" || cfg.Cluster == "" {
		return nil, errors.New("control: JetStream, Cluster and Node are required")
	}
	h := cfg.Hooks
	if h.TakenOver == nil || h.PublishWill == nil || h.MayWrite == nil || h.PublishPresence == nil {
		return nil, errors.New("control: hooks TakenOver, PublishWill, MayWrite and PublishPresence are required")
	}
	if cfg.NodeTTL <= 0 {
		cfg.NodeTTL = DefaultNodeTTL
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RevokedTTL <= 0 {
		cfg.RevokedTTL = DefaultRevokedTTL
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	c := &Controller{
		cfg: cfg, log: log.With("component", "cluster-control", "node", cfg.Node),
		instance: xid.New().String(), started: time.Now(),
		peers: make(map[string]*peer), reaping: make(map[string]string),
		mirror: make(chan mirrorOp, 4096),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	specs := []struct {
		kv   *jetstream.KeyValue
		name string
		ttl  time.Duration
	}{
		{&c.owners, "owners", 0},
		{&c.nodes, "nodes", cfg.NodeTTL},
		{&c.wills, "wills", 0},
		{&c.presence, "presence", 0},
		{&c.revoked, "revoked", cfg.RevokedTTL},
	}
	// In parallel: each replicated bucket waits for its own Raft group.
	errs := make([]error, len(specs))
	var wg sync.WaitGroup
	for i, sp := range specs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			*sp.kv, errs[i] = c.bucket(ctx, bucketName(cfg.Cluster, sp.name), sp.ttl)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Controller) bucket(ctx context.Context, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	// Several nodes start at once and race to create the same buckets; a
	// replicated create may go unanswered while another one is applied,
	// so each attempt is short: look the bucket up, create it if missing,
	// and try again until the deadline.
	ctx, cancel := context.WithTimeout(ctx, 10*c.cfg.Timeout)
	defer cancel()
	var last error
	for attempt := 0; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, c.cfg.Timeout)
		kv, err := c.cfg.JetStream.KeyValue(actx, name)
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			kv, err = c.cfg.JetStream.CreateKeyValue(actx, jetstream.KeyValueConfig{
				Bucket: name, History: 1, TTL: ttl, Replicas: c.cfg.Replicas, Storage: jetstream.FileStorage,
			})
		}
		acancel()
		if err == nil {
			return kv, nil
		}
		last = err
		select {
		case <-ctx.Done():
			return nil, unavailable("open bucket "+name, last)
		case <-time.After(time.Duration(50*(attempt+1)) * time.Millisecond):
		}
	}
}

// Instance is the id of this run of the node (a new one at every start).
func (c *Controller) Instance() string { return c.instance }

// Start heart-beats, watches ownership and revocations, and reaps dead
// nodes (including this node's previous run).
func (c *Controller) Start() error {
	var err error
	c.startOnce.Do(func() {
		if err = c.beat(); err != nil {
			return
		}
		var ow, nw jetstream.KeyWatcher
		if ow, err = c.owners.WatchAll(c.ctx, jetstream.UpdatesOnly(), jetstream.IgnoreDeletes()); err != nil {
			err = unavailable("watch owners", err)
			return
		}
		if nw, err = c.nodes.WatchAll(c.ctx, jetstream.IgnoreDeletes()); err != nil {
			err = unavailable("watch nodes", err)
			return
		}
		if err = c.watchPresence(); err != nil {
			return
		}
		c.wg.Add(4)
		go c.watchOwners(ow)
		go c.watchNodes(nw)
		go c.loop()
		go c.runMirror()
		c.wg.Add(1)
		go func() { defer c.wg.Done(); c.reapSelf() }()
		c.running.Store(true)
	})
	return err
}

// Started reports whether Start has succeeded: the node heart-beats and
// watches the cluster. Until then /healthz reports the node unavailable.
func (c *Controller) Started() bool { return c.running.Load() }

// Shutdown stops the controller's goroutines. The node's liveness key is
// left to expire: the surviving nodes then clear what is left of its
// presence.
func (c *Controller) Shutdown(ctx context.Context) error {
	c.shutdownOnce.Do(func() {
		c.cancel()
	})
	done := make(chan struct{})
	go func() { c.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("control shutdown: %w", ctx.Err())
	}
}

func (c *Controller) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.ctx, c.cfg.Timeout)
}

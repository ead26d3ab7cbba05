package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/broker"
)

// Headers of forwarded messages.
const (
	hdrOrigin = "Sk-O" // the origin node's boot id (Node.Boot)
	hdrSeq    = "Sk-S" // the origin's message sequence
)

// Target is the broker as the backplane sees it: where messages and
// retained updates from other nodes go.
type Target interface {
	DeliverRemote(body []byte, group, filter string) error
	ApplyRetained(topic string, body []byte) error
}

// Backplane is the data plane between this node's broker and the others:
// it implements broker.Backplane.
//
// Messages published here go out on the subject of their topic (core NATS
// for QoS 0, and for QoS 1/2 through the cluster's JetStream stream, which
// acknowledges once it has stored them). A node subscribes only to the
// subjects of the filters its local subscribers use, on a connection with
// echo off (it never hears itself); the copies one message makes through
// overlapping filters are dropped by the origin's sequence number, which
// also keeps each origin's order, since one goroutine hands them to the
// broker. Shared subscription groups are NATS queue groups on a second
// connection (echo on, so a member on the publishing node competes too):
// each message reaches one member cluster-wide. Retained messages live in
// a key-value bucket (one key per topic) watched by every node.
type Backplane struct {
	node   *Node
	log    *slog.Logger
	target Target
	cfg    Config

	pub    *nats.Conn // publishes, ordinary interest; no echo
	share  *nats.Conn // shared groups' queue subscriptions
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	stream string

	pubMu sync.Mutex // orders sequence numbers as they reach the connection
	seq   uint64

	imu  sync.Mutex
	subs map[interestKey][]*nats.Subscription

	in       chan *nats.Msg
	stop     chan struct{}
	applied  atomic.Uint64 // last retained revision applied
	lastSeq  seqReader     // the bucket's last revision, read for RetainedSync
	loaded   chan struct{} // closed when the initial retained state is applied
	watcher  jetstream.KeyWatcher
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	closeOne sync.Once

	peersMu sync.Mutex
	peers   map[string]time.Time // node name -> last heartbeat
	m       *bpMetrics
}

type interestKey struct{ filter, group string }

var _ broker.Backplane = (*Backplane)(nil)

// inBuffer is how many messages from other nodes may wait for the broker;
// beyond it NATS drops them (counted as slow-consumer errors).
const inBuffer = 1 << 16

// heartbeatEvery is how often a node announces itself (peers seen).
const heartbeatEvery = 2 * time.Second

// NewBackplane connects the data plane of node to target: it creates the
// message stream and the retained bucket if needed, and applies the
// cluster's retained messages to target before it returns (bounded by
// the start timeout). reg may be nil.
func NewBackplane(ctx context.Context, node *Node, target Target, reg prometheus.Registerer, log *slog.Logger) (*Backplane, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg := node.Config()
	b := &Backplane{
		node: node, target: target, cfg: cfg,
		log:    log.With("component", "cluster", "node", cfg.Node),
		subs:   make(map[interestKey][]*nats.Subscription),
		in:     make(chan *nats.Msg, inBuffer),
		stop:   make(chan struct{}),
		loaded: make(chan struct{}),
		peers:  make(map[string]time.Time),
		stream: "SOCKMQ_" + cfg.Name + "_MSGS",
	}
	var err error
	if b.pub, err = node.Dial("sockmq-"+cfg.Node+"-data", true); err != nil {
		return nil, err
	}
	if b.share, err = node.Dial("sockmq-"+cfg.Node+"-shared", false); err != nil {
		return nil, err
	}
	if b.js, err = jetstream.New(b.pub); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	admin := node.JetStream()
	if _, err := createOrUpdateStream(ctx, admin, jetstream.StreamConfig{
		Name:        b.stream,
		Description: "sockmq QoS 1/2 messages crossing nodes",
		Subjects:    []string{subjectRoot + "." + cfg.Name + "." + classJS + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      cfg.MessageMaxAge,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
		Duplicates:  2 * time.Minute,
	}); err != nil {
		return nil, fmt.Errorf("cluster: create stream %s: %w", b.stream, err)
	}
	if b.kv, err = createOrUpdateKV(ctx, admin, jetstream.KeyValueConfig{
		Bucket:      "sockmq_" + cfg.Name + "_retained",
		Description: "sockmq retained messages, one key per topic",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.Replicas,
	}); err != nil {
		return nil, fmt.Errorf("cluster: create retained bucket: %w", err)
	}
	b.m = newBPMetrics(reg, b)
	b.lastSeq.fetch = b.bucketLastSeq
	wctx, wcancel := context.WithCancel(context.Background())
	b.cancel = wcancel
	if b.watcher, err = b.kv.WatchAll(wctx); err != nil {
		wcancel()
		return nil, fmt.Errorf("cluster: watch retained bucket: %w", err)
	}
	b.wg.Add(3)
	go b.watchRetained()
	go b.dispatch()
	go b.heartbeat(wctx)
	select {
	case <-b.loaded:
	case <-ctx.Done():
		b.Close()
		return nil, fmt.Errorf("cluster: retained messages not loaded within cluster.start_timeout: %w", ctx.Err())
	}
	return b, nil
}

// Interest implements broker.Backplane: subscribe to the subjects of a
// filter when its first local subscription appears, unsubscribe when the
// last goes. nats.go re-sends subscriptions after a reconnect.
func (b *Backplane) Interest(filter, group string, on bool) {
	b.imu.Lock()
	defer b.imu.Unlock()
	k := interestKey{filter, group}
	if !on {
		for _, s := range b.subs[k] {
			_ = s.Unsubscribe()
		}
		delete(b.subs, k)
		return
	}
	if _, ok := b.subs[k]; ok {
		return
	}
	subjects, err := filterSubjects(b.cfg.Name, filter)
	if err != nil {
		b.log.Warn("filter not subscribed across the cluster", "filter", filter, "error", err)
		return
	}
	var subs []*nats.Subscription
	for _, subj := range subjects {
		var s *nats.Subscription
		if group == "" {
			s, err = b.pub.ChanSubscribe(subj, b.in)
		} else {
			s, err = b.share.QueueSubscribe(subj, queueName(group, filter), func(m *nats.Msg) {
				b.m.in.Inc()
				if err := b.target.DeliverRemote(m.Data, group, filter); err != nil && !errors.Is(err, broker.ErrNotRunning) {
					b.log.Warn("message from another node not delivered", "subject", m.Subject, "error", err)
				}
			})
		}
		if err != nil {
			b.log.Warn("subscribe across the cluster failed", "filter", filter, "group", group, "error", err)
			continue
		}
		if group == "" {
			_ = s.SetPendingLimits(-1, -1)
		}
		subs = append(subs, s)
	}
	b.subs[k] = subs
}

// Forward implements broker.Backplane.
func (b *Backplane) Forward(f broker.Forwarded) error {
	var ctx context.Context
	var cancel context.CancelFunc
	if f.Durable || f.Retain {
		if !b.pub.IsConnected() {
			if f.Durable {
				b.m.refused.Inc()
				return errors.New("not connected to NATS")
			}
		}
		ctx, cancel = context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
		defer cancel()
	}
	if f.Retain && retainedInCluster(f.Topic) && b.pub.IsConnected() {
		if err := b.putRetained(ctx, f); err != nil {
			if f.Durable {
				b.m.refused.Inc()
				return err
			}
			b.log.Warn("retained message kept on this node only", "topic", f.Topic, "error", err)
		}
	}
	class := classCore
	if f.Durable {
		class = classJS
	}
	subject, err := topicSubject(b.cfg.Name, class, f.Topic)
	if err != nil {
		if f.Durable {
			b.m.refused.Inc()
			return err
		}
		b.log.Debug("message not forwarded", "topic", f.Topic, "error", err)
		return nil
	}
	m := nats.NewMsg(subject)
	m.Data = f.Body
	b.pubMu.Lock()
	b.seq++
	seq := strconv.FormatUint(b.seq, 10)
	m.Header.Set(hdrOrigin, b.node.Boot())
	m.Header.Set(hdrSeq, seq)
	var fut jetstream.PubAckFuture
	if f.Durable {
		fut, err = b.js.PublishMsgAsync(m, jetstream.WithMsgID(b.node.Boot()+"-"+seq))
	} else {
		err = b.pub.PublishMsg(m)
	}
	b.pubMu.Unlock()
	if class == classJS {
		b.m.out.WithLabelValues("jetstream").Inc()
	} else {
		b.m.out.WithLabelValues("core").Inc()
	}
	if err != nil {
		if f.Durable {
			b.m.refused.Inc()
			return err
		}
		b.log.Debug("message not forwarded", "topic", f.Topic, "error", err)
		return nil
	}
	if fut == nil {
		return nil
	}
	select {
	case <-fut.Ok():
		return nil
	case err := <-fut.Err():
		b.m.refused.Inc()
		return fmt.Errorf("JetStream did not store the message: %w", err)
	case <-ctx.Done():
		b.m.refused.Inc()
		return fmt.Errorf("JetStream did not acknowledge within cluster.publish_timeout (%s)", b.cfg.PublishTimeout)
	}
}

// retainedInCluster: $SYS retained messages describe one node and are not
// shared through the bucket. Presence documents ($presence/clients/<id>)
// are: each carries its node, and the cluster's reaper clears those of a
// dead node (cluster/control), so $presence/clients/+ lists every node's
// sessions.
func retainedInCluster(t string) bool {
	first, rest, _ := strings.Cut(t, "/")
	if first == "$presence" {
		return strings.HasPrefix(rest, "clients/")
	}
	return first != "$SYS" && first != "$sockmq"
}

func (b *Backplane) putRetained(ctx context.Context, f broker.Forwarded) error {
	key, err := retainedKey(f.Topic)
	if err != nil {
		return err
	}
	if f.Clear {
		err = b.kv.Delete(ctx, key)
	} else {
		_, err = b.kv.Put(ctx, key, f.Body)
	}
	if err != nil {
		return fmt.Errorf("retained bucket: %w", err)
	}
	return nil
}

// dispatch hands messages from other nodes to the broker, one at a time,
// dropping the second copy of a message that matched overlapping filters.
func (b *Backplane) dispatch() {
	defer b.wg.Done()
	last := make(map[string]uint64) // origin -> highest sequence delivered
	seen := make(map[string]time.Time)
	n := 0
	for {
		var m *nats.Msg
		select {
		case m = <-b.in:
		case <-b.stop:
			return
		}
		origin := m.Header.Get(hdrOrigin)
		seq, err := strconv.ParseUint(m.Header.Get(hdrSeq), 10, 64)
		if origin == "" || err != nil || origin == b.node.Boot() {
			continue
		}
		if seq <= last[origin] {
			b.m.dups.Inc()
			continue
		}
		last[origin] = seq
		b.m.in.Inc()
		if err := b.target.DeliverRemote(m.Data, "", ""); err != nil && !errors.Is(err, broker.ErrNotRunning) {
			b.log.Warn("message from another node not delivered", "subject", m.Subject, "error", err)
		}
		if n++; n%4096 == 0 { // forget origins (restarted nodes) not heard for 10 minutes
			now := time.Now()
			seen[origin] = now
			for o, t := range seen {
				if now.Sub(t) > 10*time.Minute {
					delete(seen, o)
					delete(last, o)
				}
			}
		} else if _, ok := seen[origin]; !ok {
			seen[origin] = time.Now()
		}
	}
}

// watchRetained applies the bucket's state, then every change, in
// revision order.
func (b *Backplane) watchRetained() {
	defer b.wg.Done()
	loaded := false
	for e := range b.watcher.Updates() {
		if e == nil {
			if !loaded {
				loaded = true
				close(b.loaded)
			}
			continue
		}
		t, err := keyTopic(e.Key())
		if err == nil {
			var body []byte
			if e.Operation() == jetstream.KeyValuePut {
				body = e.Value()
			}
			err = b.target.ApplyRetained(t, body)
		}
		if err != nil {
			b.log.Warn("retained update not applied", "key", e.Key(), "error", err)
		}
		b.applied.Store(e.Revision())
	}
	if !loaded {
		close(b.loaded)
	}
}

// RetainedSync implements broker.Backplane: wait (up to
// cluster.publish_timeout) until the retained updates the bucket holds now
// are applied here. Without NATS it returns at once: local state is all
// there is.
func (b *Backplane) RetainedSync() {
	if !b.pub.IsConnected() {
		return
	}
	want, err := b.lastSeq.read()
	if err != nil {
		b.log.Debug("retained state not checked", "error", err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
	defer cancel()
	for b.applied.Load() < want {
		select {
		case <-ctx.Done():
			b.log.Warn("retained state not caught up", "applied", b.applied.Load(), "want", want)
			return
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// heartbeat announces this node every heartbeatEvery and records the
// others (peers seen), and measures the NATS round trip.
func (b *Backplane) heartbeat(ctx context.Context) {
	defer b.wg.Done()
	subj := subjectRoot + "." + b.cfg.Name + ".hb"
	sub, err := b.share.Subscribe(subj, func(m *nats.Msg) {
		name := string(m.Data)
		if name == b.cfg.Node {
			return
		}
		b.peersMu.Lock()
		b.peers[name] = time.Now()
		b.peersMu.Unlock()
	})
	if err != nil {
		b.log.Warn("heartbeat subscription failed", "error", err)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	for {
		_ = b.share.Publish(subj, []byte(b.cfg.Node))
		if rtt, err := b.pub.RTT(); err == nil {
			b.m.rtt.Set(rtt.Seconds())
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Peers returns the other nodes heard from within three heartbeats.
func (b *Backplane) Peers() []string {
	b.peersMu.Lock()
	defer b.peersMu.Unlock()
	var out []string
	for n, t := range b.peers {
		if time.Since(t) < 3*heartbeatEvery {
			out = append(out, n)
		}
	}
	return out
}

// Health is the cluster part of /healthz: whether this node can reach
// NATS, and what it sees.
func (b *Backplane) Health() (any, bool) {
	ok, why := b.node.Healthy()
	if ok && !b.pub.IsConnected() {
		ok, why = false, "data connection to NATS lost"
	}
	h := struct {
		Name        string   `json:"name"`
		Node        string   `json:"node"`
		Connected   bool     `json:"connected"`
		Error       string   `json:"error,omitempty"`
		Server      string   `json:"server,omitempty"`
		Peers       []string `json:"peers"`
		Disconnects int64    `json:"disconnects"`
	}{Name: b.cfg.Name, Node: b.cfg.Node, Connected: ok, Error: why, Server: b.pub.ConnectedServerName(), Peers: b.Peers(), Disconnects: b.node.Disconnects()}
	if h.Peers == nil {
		h.Peers = []string{}
	}
	return h, ok
}

// Close unsubscribes and stops the backplane's goroutines (the node's
// Shutdown closes its connections). Safe to call more than once.
func (b *Backplane) Close() {
	b.closeOne.Do(func() {
		b.imu.Lock()
		for k, subs := range b.subs {
			for _, s := range subs {
				_ = s.Unsubscribe()
			}
			delete(b.subs, k)
		}
		b.imu.Unlock()
		if b.watcher != nil {
			_ = b.watcher.Stop()
		}
		if b.cancel != nil {
			b.cancel()
		}
		_ = b.pub.FlushTimeout(time.Second)
		b.pub.Close()
		b.share.Close()
		close(b.stop)
		b.wg.Wait()
	})
}

// bucketLastSeq asks JetStream for the retained bucket's last revision.
func (b *Backplane) bucketLastSeq() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.PublishTimeout)
	defer cancel()
	st, err := b.kv.Status(ctx)
	if err != nil {
		return 0, err
	}
	bs, ok := st.(*jetstream.KeyValueBucketStatus)
	if !ok || bs.StreamInfo() == nil {
		return 0, errors.New("retained bucket status without stream info")
	}
	return bs.StreamInfo().State.LastSeq, nil
}

package control

import (
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// beat writes this node's liveness key.
func (c *Controller) beat() error {
	hb := heartbeat{Node: c.cfg.Node, Instance: c.instance, Started: c.started}
	if c.cfg.Hooks.FileHashes != nil {
		hb.Files = c.cfg.Hooks.FileHashes()
	}
	b, _ := json.Marshal(hb)
	ctx, cancel := c.opCtx()
	defer cancel()
	if _, err := c.nodes.Put(ctx, nodeKey(c.cfg.Node), b); err != nil {
		return unavailable("heartbeat", err)
	}
	return nil
}

// watchNodes records every heartbeat with the local time it was seen.
func (c *Controller) watchNodes(w jetstream.KeyWatcher) {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			node, ok := decPrefixed(e.Key(), "n.")
			if !ok {
				continue
			}
			var hb heartbeat
			if json.Unmarshal(e.Value(), &hb) != nil {
				continue
			}
			seen := time.Now()
			if age := time.Since(e.Created()); age > 0 && age < c.cfg.NodeTTL {
				seen = seen.Add(-age) // an old heartbeat from the initial values
			} else if age >= c.cfg.NodeTTL {
				seen = seen.Add(-c.cfg.NodeTTL)
			}
			c.mu.Lock()
			// Never move a peer's last sighting back: a heartbeat delivered
			// late (after an outage, by a watcher catching up) must not
			// undo a later sighting or the grace an outage gave.
			rev := e.Revision()
			if old := c.peers[node]; old != nil {
				if old.lastSeen.After(seen) {
					seen = old.lastSeen
				}
				rev = max(rev, old.rev)
			}
			c.peers[node] = &peer{beat: hb, lastSeen: seen, rev: rev}
			if c.reaping[node] != "" && c.reaping[node] != hb.Instance {
				delete(c.reaping, node) // a new run of a reaped node
			}
			c.mu.Unlock()
		}
	}
}

// loop heart-beats and looks for dead nodes.
func (c *Controller) loop() {
	defer c.wg.Done()
	every := c.cfg.NodeTTL / 4
	t := time.NewTicker(every)
	defer t.Stop()
	failing := false
	lastBeat := time.Now() // Start beat once
	scanned := false
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		if err := c.beat(); err != nil {
			if !failing {
				c.log.Warn("cluster heartbeat failing: other nodes will consider this node dead after node_ttl", "ttl", c.cfg.NodeTTL, "error", err)
			}
			failing = true
			continue
		}
		down := time.Since(lastBeat)
		lastBeat = time.Now()
		// A peer is dead only if it stayed silent while this node could
		// heart-beat: a gap in this node's own beats (the bucket had no
		// leader, NATS was unreachable, a beat hung until the election
		// ended) gives every peer a full node_ttl from now.
		c.graceAfterGap(down, every, lastBeat)
		if failing {
			failing = false
			c.log.Info("cluster heartbeat restored", "after", down.Round(time.Millisecond))
			if down >= c.cfg.NodeTTL && c.cfg.Hooks.Rejoined != nil {
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.cfg.Hooks.Rejoined() }()
			}
		}
		for _, node := range c.deadPeers() {
			c.wg.Add(1)
			go func() { defer c.wg.Done(); c.reapNode(node) }()
		}
		// Nodes that died before this one started left records but no
		// heartbeat: look once, after a full TTL of listening.
		if !scanned && time.Since(c.started) > c.cfg.NodeTTL {
			scanned = true
			for _, node := range c.orphanNodes() {
				c.wg.Add(1)
				go func() { defer c.wg.Done(); c.reapNode(node) }()
			}
		}
	}
}

// graceAfterGap gives every peer a full NodeTTL from now when this node's
// own successful beats were gap apart, more than two beat intervals
// (every): during such a gap the peers' beats could not be written or
// seen either, so their silence is no evidence that they died.
func (c *Controller) graceAfterGap(gap, every time.Duration, now time.Time) {
	if gap <= 2*every {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.peers {
		if p.lastSeen.Before(now) {
			p.lastSeen = now
		}
	}
}

// deadPeers returns the nodes whose heartbeat is older than NodeTTL and
// that this node has not started reaping. The watch is not trusted
// alone: a watcher can stall for seconds after JetStream loses a leader,
// so a peer that looks silent is confirmed by reading its liveness key
// (stillSilent) before it is declared dead.
func (c *Controller) deadPeers() []string {
	type suspect struct {
		node, instance string
		rev            uint64
	}
	var suspects []suspect
	c.mu.Lock()
	for node, p := range c.peers {
		if node == c.cfg.Node || time.Since(p.lastSeen) <= c.cfg.NodeTTL {
			continue
		}
		if c.reaping[node] == p.beat.Instance {
			continue
		}
		suspects = append(suspects, suspect{node, p.beat.Instance, p.rev})
	}
	c.mu.Unlock()
	var dead []string
	for _, s := range suspects {
		if !c.stillSilent(s.node, s.rev) {
			continue
		}
		c.mu.Lock()
		if p := c.peers[s.node]; p != nil && p.beat.Instance == s.instance && c.reaping[s.node] != s.instance &&
			time.Since(p.lastSeen) > c.cfg.NodeTTL {
			c.reaping[s.node] = s.instance
			dead = append(dead, s.node)
		}
		c.mu.Unlock()
	}
	return dead
}

// stillSilent reads node's liveness key: it reports true when the key is
// gone (the bucket's TTL expired it) or holds no heartbeat newer than rev,
// the newest this node saw. A newer heartbeat means the watch lagged: the
// peer is marked seen now. When the key cannot be read, nothing can be
// concluded and it reports false (the next beat tries again).
func (c *Controller) stillSilent(node string, rev uint64) bool {
	ctx, cancel := c.opCtx()
	defer cancel()
	e, err := c.nodes.Get(ctx, nodeKey(node))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		return true
	case err != nil:
		c.log.Debug("liveness check failed; not declaring the node dead yet", "peer", node, "error", err)
		return false
	case e.Revision() <= rev:
		return true
	}
	c.mu.Lock()
	if p := c.peers[node]; p != nil && e.Revision() > p.rev {
		p.rev = e.Revision()
		p.lastSeen = time.Now()
	}
	c.mu.Unlock()
	return false
}

// orphanNodes lists the nodes that hold will or presence records but do
// not heart-beat.
func (c *Controller) orphanNodes() []string {
	nodes := make(map[string]bool)
	for _, kv := range []jetstream.KeyValue{c.wills, c.presence} {
		ctx, cancel := c.opCtx()
		lister, err := kv.ListKeys(ctx)
		if err != nil {
			cancel()
			c.log.Warn("list records for orphan nodes", "error", err)
			continue
		}
		for k := range lister.Keys() {
			if node, _, ok := splitScoped(k); ok {
				nodes[node] = true
			}
		}
		cancel()
	}
	var out []string
	c.mu.Lock()
	defer c.mu.Unlock()
	for node := range nodes {
		if node == c.cfg.Node {
			continue
		}
		if _, known := c.peers[node]; known {
			continue // a live node, or one deadPeers handles
		}
		if _, ok := c.reaping[node]; ok {
			continue
		}
		c.reaping[node] = "?"
		out = append(out, node)
	}
	return out
}

// Alive reports whether node heart-beat within NodeTTL (this node always
// is).
func (c *Controller) Alive(node string) bool {
	if node == c.cfg.Node {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.peers[node]
	return p != nil && time.Since(p.lastSeen) <= c.cfg.NodeTTL
}

// NodeHealth is one node as /healthz reports it.
type NodeHealth struct {
	Node     string            `json:"node"`
	Instance string            `json:"instance"`
	Alive    bool              `json:"alive"`
	LastSeen string            `json:"last_seen"`
	Files    map[string]string `json:"files,omitempty"`
}

// Health is the control state for /healthz.
type Health struct {
	// Nodes lists every node seen since this node started.
	Nodes []NodeHealth `json:"nodes"`
	// FilesDiffer names the files (passwd, acl) whose hash differs between
	// live nodes: permissions then differ from node to node.
	FilesDiffer []string `json:"files_differ,omitempty"`
}

// Health returns the nodes seen and whether their files differ.
func (c *Controller) Health() Health {
	c.mu.Lock()
	defer c.mu.Unlock()
	var h Health
	hashes := make(map[string]map[string]bool) // file -> hashes of live nodes
	for _, node := range slices.Sorted(maps.Keys(c.peers)) {
		p := c.peers[node]
		alive := node == c.cfg.Node || time.Since(p.lastSeen) <= c.cfg.NodeTTL
		h.Nodes = append(h.Nodes, NodeHealth{Node: node, Instance: p.beat.Instance, Alive: alive,
			LastSeen: p.lastSeen.UTC().Format(time.RFC3339), Files: p.beat.Files})
		if !alive {
			continue
		}
		for f, sum := range p.beat.Files {
			if hashes[f] == nil {
				hashes[f] = make(map[string]bool)
			}
			hashes[f][sum] = true
		}
	}
	for _, f := range slices.Sorted(maps.Keys(hashes)) {
		if len(hashes[f]) > 1 {
			h.FilesDiffer = append(h.FilesDiffer, f)
		}
	}
	return h
}

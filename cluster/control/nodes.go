package control

import (
	"encoding/json"
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
			c.peers[node] = &peer{beat: hb, lastSeen: seen}
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

// deadPeers returns the nodes whose heartbeat is older than NodeTTL and
// that this node has not started reaping.
func (c *Controller) deadPeers() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var dead []string
	for node, p := range c.peers {
		if node == c.cfg.Node || time.Since(p.lastSeen) <= c.cfg.NodeTTL {
			continue
		}
		if c.reaping[node] == p.beat.Instance {
			continue
		}
		c.reaping[node] = p.beat.Instance
		dead = append(dead, node)
	}
	return dead
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

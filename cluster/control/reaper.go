package control

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/presence"
)

// willRecord is the value of a will key.
type willRecord struct {
	Instance string `json:"instance"`
	Epoch    uint64 `json:"epoch"`
	Will     Will   `json:"will"`
	// Bridge marks the will of a bridge socket: no client id ownership
	// applies to it (a socket never comes back with the same id).
	Bridge bool `json:"bridge,omitempty"`
}

// presenceRecord is the value of a presence key.
type presenceRecord struct {
	Instance string          `json:"instance"`
	Doc      json.RawMessage `json:"doc"`
}

// reapSelf sends what the previous run of this node left: wills its
// clients had when it stopped (unless its restored sessions sent them
// first: each is claimed once) and presence leaves for its sessions.
func (c *Controller) reapSelf() {
	c.reap(c.cfg.Node, c.instance)
}

// reapNode reaps a dead node if this node wins the election for it.
func (c *Controller) reapNode(node string) {
	ctx, cancel := c.opCtx()
	_, err := c.nodes.Create(ctx, reaperKey(node), []byte(c.cfg.Node))
	cancel()
	if errors.Is(err, jetstream.ErrKeyExists) {
		c.log.Debug("another node reaps the dead node", "dead", node)
		return
	}
	if err != nil {
		c.log.Warn("reaper election failed", "dead", node, "error", err)
		c.mu.Lock()
		delete(c.reaping, node) // try again at the next tick
		c.mu.Unlock()
		return
	}
	c.log.Warn("node is dead: publishing its wills and removing its sessions from presence", "dead", node, "ttl", c.cfg.NodeTTL)
	c.reap(node, "")
}

// reap publishes node's pending wills and presence leaves, skipping the
// records of run keep (this node's own run when reaping itself).
func (c *Controller) reap(node, keep string) {
	wills := c.entries(c.wills, node)
	var delayed []jetstream.KeyValueEntry
	for _, e := range wills {
		var rec willRecord
		if json.Unmarshal(e.Value(), &rec) != nil || (keep != "" && rec.Instance == keep) {
			continue
		}
		if rec.Will.Delay > 0 {
			delayed = append(delayed, e)
			continue
		}
		c.sendWill(node, e, rec)
	}
	for _, e := range c.entries(c.presence, node) {
		var rec presenceRecord
		if json.Unmarshal(e.Value(), &rec) != nil || (keep != "" && rec.Instance == keep) {
			continue
		}
		c.leave(node, e, rec)
	}
	if len(delayed) == 0 {
		return
	}
	start := time.Now()
	for _, e := range delayed {
		var rec willRecord
		_ = json.Unmarshal(e.Value(), &rec)
		due := start.Add(time.Duration(rec.Will.Delay) * time.Second)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Until(due)):
		}
		if !rec.Bridge && c.reconnectedElsewhere(rec.Will.ClientID, node, rec.Instance) {
			ctx, cancel := c.opCtx()
			_ = c.wills.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
			cancel()
			c.log.Info("delayed will of a dead node's client cancelled: the client reconnected", "client", rec.Will.ClientID, "dead", node)
			continue
		}
		c.sendWill(node, e, rec)
	}
}

// entries returns the records of node in kv. Right after a node died,
// the buckets it led need a new leader (a few seconds): entries tries
// again until it can read them or the controller stops.
func (c *Controller) entries(kv jetstream.KeyValue, node string) []jetstream.KeyValueEntry {
	for attempt := 0; ; attempt++ {
		out, err := c.tryEntries(kv, node)
		if err == nil {
			return out
		}
		if attempt%10 == 0 {
			c.log.Warn("list records of node: trying again", "node", node, "bucket", kv.Bucket(), "error", err)
		}
		select {
		case <-c.ctx.Done():
			return nil
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (c *Controller) tryEntries(kv jetstream.KeyValue, node string) ([]jetstream.KeyValueEntry, error) {
	ctx, cancel := c.opCtx()
	defer cancel()
	lister, err := kv.ListKeysFiltered(ctx, nodeFilter(node))
	if err != nil {
		return nil, err
	}
	var keys []string
	for k := range lister.Keys() {
		keys = append(keys, k)
	}
	if ctx.Err() != nil {
		return nil, ctx.Err() // the listing was cut short
	}
	var out []jetstream.KeyValueEntry
	for _, k := range keys {
		e, err := kv.Get(ctx, k)
		switch {
		case err == nil:
			out = append(out, e)
		case errors.Is(err, jetstream.ErrKeyNotFound):
		default:
			return nil, err
		}
	}
	return out, nil
}

// reconnectedElsewhere reports whether clientID is now owned by another
// node or another run than the one that stored the record.
func (c *Controller) reconnectedElsewhere(clientID, node, instance string) bool {
	ctx, cancel := c.opCtx()
	defer cancel()
	e, err := c.owners.Get(ctx, ownerKey(clientID))
	if err != nil {
		return false
	}
	var rec owner
	return json.Unmarshal(e.Value(), &rec) == nil && (rec.Node != node || rec.Instance != instance)
}

// sendWill claims a will record and publishes it if its user may still
// write its topic.
func (c *Controller) sendWill(node string, e jetstream.KeyValueEntry, rec willRecord) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := c.opCtx()
		err := c.wills.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		cancel()
		if err == nil {
			break
		}
		if isWrongRevision(err) {
			return // claimed by someone else
		}
		if attempt == 20 || c.ctx.Err() != nil {
			c.log.Warn("will of a dead node's client not sent: the will store is unreachable", "client", rec.Will.ClientID, "dead", node, "error", err)
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(250 * time.Millisecond):
		}
	}
	w := rec.Will
	if !c.cfg.Hooks.MayWrite(w.User, w.ClientID, w.Topic) {
		c.log.Info("will of a dead node's client dropped: topic no longer permitted", "client", w.ClientID, "user", w.User, "topic", w.Topic)
		return
	}
	// The will is claimed: nobody else will send it, so a failed publish
	// (the message stream electing a leader after the node died) is tried
	// again, with back-off, for up to willPublishRetry.
	start := time.Now()
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := c.cfg.Hooks.PublishWill(w)
		if err == nil {
			break
		}
		if time.Since(start) > willPublishRetry || c.ctx.Err() != nil {
			c.log.Error("will of a dead node's client lost: publishing kept failing", "client", w.ClientID, "dead", node,
				"tried_for", time.Since(start).Round(time.Millisecond), "error", err)
			return
		}
		c.log.Warn("publish will of a dead node's client: trying again", "client", w.ClientID, "dead", node, "in", wait, "error", err)
		select {
		case <-c.ctx.Done():
		case <-time.After(wait):
		}
	}
	c.log.Info("will of a dead node's client published", "client", w.ClientID, "dead", node, "topic", w.Topic)
}

// willPublishRetry bounds how long a claimed will is retried: long enough
// for JetStream to elect new leaders (4-9 s per round in nats-server),
// short enough that a will is not sent minutes late.
const willPublishRetry = time.Minute

// leave claims a presence record of a dead node and publishes the
// session's leave: a disconnected event and, unless the client is
// connected elsewhere now, the removal of its presence document.
func (c *Controller) leave(node string, e jetstream.KeyValueEntry, rec presenceRecord) {
	ctx, cancel := c.opCtx()
	err := c.presence.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
	cancel()
	if err != nil {
		return
	}
	var s presence.Session
	if json.Unmarshal(rec.Doc, &s) != nil || s.ID == "" {
		return
	}
	elsewhere := false
	if s.Protocol == presence.ProtocolMQTT {
		elsewhere = c.reconnectedElsewhere(s.ID, node, rec.Instance)
		if !elsewhere {
			c.releaseDead(s.ID, node)
		}
	}
	if !elsewhere {
		if err := c.cfg.Hooks.PublishPresence(presence.ClientTopic(s.ID), nil, true); err != nil {
			c.log.Warn("clear presence of a dead node's session", "client", s.ID, "error", err)
		}
	}
	ev, _ := json.Marshal(presence.Event{Session: s, Event: "disconnected", Reason: ReasonNodeDown, At: time.Now()})
	if err := c.cfg.Hooks.PublishPresence(presence.DisconnectedTopic, ev, false); err != nil {
		c.log.Warn("publish leave of a dead node's session", "client", s.ID, "error", err)
	}
}

// releaseDead deletes the ownership record of a dead node's client whose
// session did not outlive its connection.
func (c *Controller) releaseDead(clientID, node string) {
	ctx, cancel := c.opCtx()
	defer cancel()
	e, err := c.owners.Get(ctx, ownerKey(clientID))
	if err != nil {
		return
	}
	var rec owner
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Node != node || rec.Persistent {
		return
	}
	_ = c.owners.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
}

// mirrorOp is one presence document write (doc nil: the session left).
type mirrorOp struct {
	id  string
	doc []byte
}

// MirrorPresence records a presence document of this node's session id
// (doc nil when the session ended) so that a reaper can remove it if this
// node dies. Writes happen in order on the controller's goroutine.
func (c *Controller) MirrorPresence(id string, doc []byte) {
	select {
	case c.mirror <- mirrorOp{id: id, doc: doc}:
	case <-c.ctx.Done():
	}
}

func (c *Controller) runMirror() {
	defer c.wg.Done()
	for {
		select {
		case <-c.ctx.Done():
			return
		case op := <-c.mirror:
			ctx, cancel := c.opCtx()
			key := nodeScoped(c.cfg.Node, op.id)
			var err error
			if op.doc == nil {
				err = c.presence.Delete(ctx, key)
			} else {
				b, _ := json.Marshal(presenceRecord{Instance: c.instance, Doc: op.doc})
				_, err = c.presence.Put(ctx, key, b)
			}
			cancel()
			if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				c.log.Warn("presence mirror write failed", "client", op.id, "error", err)
			}
		}
	}
}

package control

import (
	"encoding/json"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/presence"
)

// remotePresence is this node's copy of the other nodes' presence
// documents, fed by a watch of the presence bucket, so that "who is
// connected" answers for the whole cluster without a store round trip.
type remotePresence struct {
	mu   sync.RWMutex
	docs map[string]presence.Doc // by presence key
	list []presence.Doc          // built on demand, nil after a change
}

// watchPresence starts feeding the cache (from Start).
func (c *Controller) watchPresence() error {
	w, err := c.presence.WatchAll(c.ctx)
	if err != nil {
		return unavailable("watch presence", err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			select {
			case <-c.ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					c.remote.apply(c.cfg.Node, e)
				}
			}
		}
	}()
	return nil
}

func (r *remotePresence) apply(self string, e jetstream.KeyValueEntry) {
	node, _, ok := splitScoped(e.Key())
	if !ok || node == self {
		return // this node's sessions come from its own tracker
	}
	var d presence.Doc
	if e.Operation() == jetstream.KeyValuePut {
		var rec presenceRecord
		if json.Unmarshal(e.Value(), &rec) != nil || json.Unmarshal(rec.Doc, &d.Session) != nil || d.Session.ID == "" {
			return
		}
		d.JSON = rec.Doc
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.docs == nil {
		r.docs = make(map[string]presence.Doc)
	}
	if d.JSON == nil {
		delete(r.docs, e.Key())
	} else {
		r.docs[e.Key()] = d
	}
	r.list = nil
}

// RemotePresence returns the sessions connected to the other nodes of the
// cluster, as mirrored in the presence store (a session leaves it when it
// ends, or when a reaper clears its dead node). The slice is shared: do not
// modify it.
func (c *Controller) RemotePresence() []presence.Doc {
	r := &c.remote
	r.mu.RLock()
	l := r.list
	r.mu.RUnlock()
	if l != nil {
		return l
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.list == nil {
		r.list = make([]presence.Doc, 0, len(r.docs))
		for _, d := range r.docs {
			r.list = append(r.list, d)
		}
	}
	return r.list
}

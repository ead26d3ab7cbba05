package control

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Revocations is a bridge token revocation list shared by every node
// through a KV bucket (it satisfies bridge.Revocations). Each node keeps
// the ids in memory, fed by a watcher, so Revoked never waits on NATS.
type Revocations struct {
	c *Controller

	mu  sync.RWMutex
	ids map[string]int64 // jti -> expiry (unix seconds)
	fns []func(jti string)
}

// Revocations returns the cluster-wide revocation list; it fills from the
// bucket before returning (or after Config.Timeout, logging) and follows
// it until Shutdown.
func (c *Controller) Revocations() *Revocations {
	r := &Revocations{c: c, ids: make(map[string]int64)}
	w, err := c.revoked.WatchAll(c.ctx, jetstream.IgnoreDeletes())
	if err != nil {
		c.log.Error("watch revoked tokens: revocations from other nodes are not seen", "error", err)
		return r
	}
	ready := make(chan struct{})
	c.wg.Add(1)
	go r.follow(w, ready)
	select {
	case <-ready:
	case <-time.After(c.cfg.Timeout):
		c.log.Warn("revoked tokens not loaded in time: they are applied as they arrive")
	}
	return r
}

func (r *Revocations) follow(w jetstream.KeyWatcher, ready chan struct{}) {
	defer r.c.wg.Done()
	for {
		select {
		case <-r.c.ctx.Done():
			return
		case e, ok := <-w.Updates():
			if !ok {
				return
			}
			if e == nil {
				if ready != nil {
					close(ready)
					ready = nil
				}
				continue
			}
			jti, ok := decPrefixed(e.Key(), "t.")
			var exp int64
			if !ok || json.Unmarshal(e.Value(), &exp) != nil {
				continue
			}
			r.add(jti, exp)
		}
	}
}

// add records jti and tells the callbacks if it is new.
func (r *Revocations) add(jti string, exp int64) {
	r.mu.Lock()
	_, known := r.ids[jti]
	r.ids[jti] = exp
	now := time.Now().Unix()
	if len(r.ids)%1024 == 0 { // trim expired ids now and then
		for k, e := range r.ids {
			if e <= now {
				delete(r.ids, k)
			}
		}
	}
	fns := r.fns
	r.mu.Unlock()
	if !known {
		for _, fn := range fns {
			fn(jti)
		}
	}
}

// Revoke revokes jti until exp on every node.
func (r *Revocations) Revoke(jti string, exp int64) error {
	r.add(jti, exp)
	b, _ := json.Marshal(exp)
	ctx, cancel := r.c.opCtx()
	defer cancel()
	if _, err := r.c.revoked.Put(ctx, revokedKey(jti), b); err != nil {
		return unavailable("revoke token", err)
	}
	return nil
}

// Revoked reports whether jti is revoked.
func (r *Revocations) Revoked(jti string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.ids[jti]
	return ok
}

// OnRevoke registers fn for every revocation, from any node.
func (r *Revocations) OnRevoke(fn func(jti string)) {
	r.mu.Lock()
	r.fns = append(r.fns, fn)
	r.mu.Unlock()
}

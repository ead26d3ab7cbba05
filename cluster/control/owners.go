package control

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrOwnedByOther is returned by Claim when the client id belongs to
// another user somewhere in the cluster.
var ErrOwnedByOther = errors.New("client id owned by another user")

// owner is the ownership record of a client id.
type owner struct {
	Node       string    `json:"node"`
	Instance   string    `json:"instance"`
	User       string    `json:"user,omitempty"`
	Persistent bool      `json:"persistent,omitempty"`
	At         time.Time `json:"at"`
}

// Claim is a node's request to own a client id.
type Claim struct {
	ClientID string
	User     string
	// Persistent says the session outlives the connection.
	Persistent bool
	// Will is the connection's will; nil clears this node's stored will
	// of the client id.
	Will *Will
}

// Grant is the result of a successful Claim.
type Grant struct {
	// Epoch is the revision of the ownership record: it grows with every
	// claim of the client id anywhere in the cluster.
	Epoch uint64
	// Takeover says the client id was owned by a live connection or
	// session on another node, which is being ended.
	Takeover bool
	// PrevNode is the node that owned the client id before, if any.
	PrevNode string
}

// Claim makes this node the owner of a client id (compare-and-set on the
// ownership record) and stores or clears its will. It fails with
// ErrOwnedByOther when another user owns the id, and with an error
// wrapping ErrUnavailable when ownership cannot be checked.
func (c *Controller) Claim(ctx context.Context, cl Claim) (Grant, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	key := ownerKey(cl.ClientID)
	val, _ := json.Marshal(owner{Node: c.cfg.Node, Instance: c.instance, User: cl.User, Persistent: cl.Persistent, At: time.Now()})
	var g Grant
	for attempt := 0; ; attempt++ {
		if attempt == 8 {
			return Grant{}, unavailable("claim "+cl.ClientID, errors.New("too many concurrent claims"))
		}
		e, err := c.owners.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			rev, err := c.owners.Create(ctx, key, val)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue
			}
			if err != nil {
				return Grant{}, unavailable("claim "+cl.ClientID, err)
			}
			g = Grant{Epoch: rev}
		case err != nil:
			return Grant{}, unavailable("claim "+cl.ClientID, err)
		default:
			var prev owner
			if json.Unmarshal(e.Value(), &prev) == nil && prev.User != cl.User {
				return Grant{}, ErrOwnedByOther
			}
			rev, err := c.owners.Update(ctx, key, val, e.Revision())
			if err != nil {
				if isWrongRevision(err) {
					continue
				}
				return Grant{}, unavailable("claim "+cl.ClientID, err)
			}
			g = Grant{Epoch: rev, PrevNode: prev.Node, Takeover: prev.Node != c.cfg.Node && c.Alive(prev.Node)}
		}
		break
	}
	wk := nodeScoped(c.cfg.Node, cl.ClientID)
	if cl.Will != nil {
		w := *cl.Will
		w.ClientID, w.User = cl.ClientID, cl.User
		b, _ := json.Marshal(willRecord{Instance: c.instance, Epoch: g.Epoch, Will: w})
		if _, err := c.wills.Put(ctx, wk, b); err != nil {
			return Grant{}, unavailable("store will of "+cl.ClientID, err)
		}
	} else if _, err := c.wills.Get(ctx, wk); err == nil {
		// A read first: most connections have no will stored, and a
		// delete is a replicated write even then.
		if err := c.wills.Delete(ctx, wk); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return Grant{}, unavailable("clear will of "+cl.ClientID, err)
		}
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return Grant{}, unavailable("read will of "+cl.ClientID, err)
	}
	return g, nil
}

// isWrongRevision reports a failed compare-and-set.
func isWrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return errors.Is(err, jetstream.ErrKeyExists)
}

// Release gives up this node's ownership of a client id whose session
// ended, unless another node (or a newer claim, when epoch is not zero)
// owns it now. Errors are logged: a stale record only keeps the
// cross-user rule for the id until it is claimed again by its user.
func (c *Controller) Release(clientID string, epoch uint64) {
	ctx, cancel := c.opCtx()
	defer cancel()
	key := ownerKey(clientID)
	e, err := c.owners.Get(ctx, key)
	if err != nil {
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			c.log.Warn("release client id", "client", clientID, "error", err)
		}
		return
	}
	var rec owner
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Node != c.cfg.Node || (epoch != 0 && e.Revision() != epoch) || (epoch == 0 && rec.Instance == c.instance) {
		return
	}
	if err := c.owners.Delete(ctx, key, jetstream.LastRevision(e.Revision())); err != nil && !isWrongRevision(err) {
		c.log.Warn("release client id", "client", clientID, "error", err)
	}
}

// ClearWill deletes this node's stored will of a client id (a clean
// DISCONNECT discarded it).
func (c *Controller) ClearWill(clientID string) {
	ctx, cancel := c.opCtx()
	defer cancel()
	if err := c.wills.Delete(ctx, nodeScoped(c.cfg.Node, clientID)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		c.log.Warn("clear will", "client", clientID, "error", err)
	}
}

// ClaimWill is called before this node publishes the will of a client id:
// it deletes the stored will (compare-and-set) and reports whether the
// will may be sent. It is false when the will is no longer in the store
// (a reaper sent it while this node was considered dead). When the store
// cannot be reached the will is sent (local delivery goes on).
func (c *Controller) ClaimWill(clientID string) bool {
	ctx, cancel := c.opCtx()
	defer cancel()
	key := nodeScoped(c.cfg.Node, clientID)
	e, err := c.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		c.log.Info("will not sent: no longer in the cluster's will store (sent by a reaper)", "client", clientID)
		return false
	}
	if err == nil {
		err = c.wills.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if isWrongRevision(err) {
			return false
		}
	}
	if err != nil {
		c.log.Warn("will store unreachable: sending the will anyway", "client", clientID, "error", err)
	}
	return true
}

// watchOwners ends local sessions of client ids that another node claimed.
func (c *Controller) watchOwners(w jetstream.KeyWatcher) {
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
			var rec owner
			if json.Unmarshal(e.Value(), &rec) != nil || (rec.Node == c.cfg.Node && rec.Instance == c.instance) {
				continue
			}
			if id, ok := clientOfOwnerKey(e.Key()); ok {
				c.cfg.Hooks.TakenOver(id, e.Revision())
			}
		}
	}
}

package broker

import (
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
)

// Revoker is the optional part of an Authorizer that supports revocation
// after a reload of its rules. *auth.Service implements it.
type Revoker interface {
	// UserExists reports whether username may still authenticate.
	UserExists(username string) bool
	// AnonymousAllowed reports whether clients without a username may connect.
	AnonymousAllowed() bool
	// OnReload registers fn to run after every successful reload.
	OnReload(fn func())
}

// registerRevocation re-checks every session after the authorizer reloads.
func (s *Server) registerRevocation() {
	r, ok := s.auth.(Revoker)
	if !ok {
		return
	}
	r.OnReload(func() { s.revoke(r) })
}

// revoke applies freshly reloaded rules to existing sessions: sessions of
// deleted users (and anonymous ones once anonymous access is off) are
// closed (DISCONNECT 0x87) and discarded; subscriptions that may no longer
// read anything are removed, and the others get their per-message check
// re-decided. Deliveries are read-checked per message where the ACL allows
// a filter only in part, so a narrowed permission takes effect at once.
func (s *Server) revoke(r Revoker) {
	for _, sess := range s.sessions.all() {
		id := identity(sess.owner, sess.id)
		if (id.Anonymous && !r.AnonymousAllowed()) || (!id.Anonymous && !r.UserExists(id.Username)) {
			s.log.Info("revoked: user no longer allowed; session closed", "client", sess.id, "user", id.Username)
			sess.mu.Lock()
			c := sess.conn
			sess.will = nil
			sess.mu.Unlock()
			if c != nil {
				c.disconnect(&endCause{err: packets.ErrNotAuthorized, reason: ReasonKicked, code: packets.ErrNotAuthorized.Code})
				<-c.detached
			}
			s.endSession(sess)
			continue
		}
		sess.mu.Lock()
		var gone []*subscription
		for f, sub := range sess.subs {
			switch s.auth.Subscription(id, sub.inner) {
			case auth.SubDeny:
				gone = append(gone, sub)
				delete(sess.subs, f)
			case auth.SubPartial:
				sub.partial.Store(true)
			default:
				sub.partial.Store(false)
			}
		}
		sess.nsubs.Store(int32(len(sess.subs)))
		persistent := sess.persistent
		sess.mu.Unlock()
		for _, sub := range gone {
			if s.subs.remove(sub) {
				s.metrics.subscriptions.Add(-1)
			}
			if persistent {
				filter := sub.filter
				s.store.Write(func(w *store.Writer) { w.DeleteSubscription(sess.id, filter) })
			}
			s.log.Info("revoked: subscription no longer permitted", "client", sess.id, "user", id.Username, "filter", sub.filter)
		}
	}
}

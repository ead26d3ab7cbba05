package broker

import (
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
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

// revoke applies freshly reloaded rules to existing sessions: clients of
// deleted users (and anonymous clients once anonymous access is off) are
// disconnected with "not authorized" and their persistent sessions are
// discarded; subscriptions that may no longer read anything are removed.
// Deliveries on subscriptions that stay are read-checked per message, so a
// narrowed permission takes effect at once.
func (s *Server) revoke(r Revoker) {
	for _, cl := range s.mq.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		id := identityOf(cl)
		if (id.Anonymous && !r.AnonymousAllowed()) || (!id.Anonymous && !r.UserExists(id.Username)) {
			s.log.Info("revoked: user no longer allowed; session closed", "client", cl.ID, "user", id.Username)
			s.discardSession(cl)
			continue
		}
		var gone []packets.Subscription
		for filter, sub := range cl.State.Subscriptions.GetAll() {
			if s.auth.Subscription(id, filter) == auth.SubDeny {
				gone = append(gone, sub)
			}
		}
		if len(gone) > 0 {
			s.removeSubscriptions(cl, gone)
		}
	}
}

// discardSession disconnects cl (if connected) and forgets its session.
func (s *Server) discardSession(cl *mqtt.Client) {
	if !cl.Closed() {
		_ = s.mq.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
	s.mq.UnsubscribeClient(cl)
	cl.ClearInflights()
	s.mq.Clients.Delete(cl.ID)
	if s.store != nil {
		s.store.deleteClient(cl.ID)
	}
}

func (s *Server) removeSubscriptions(cl *mqtt.Client, subs []packets.Subscription) {
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsubscribe}}
	for _, sub := range subs {
		if s.mq.Topics.Unsubscribe(sub.Filter, cl.ID) {
			atomic.AddInt64(&s.mq.Info.Subscriptions, -1)
		}
		cl.State.Subscriptions.Delete(sub.Filter)
		pk.Filters = append(pk.Filters, sub)
		s.log.Info("revoked: subscription no longer permitted", "client", cl.ID, "user", usernameOf(cl), "filter", sub.Filter)
	}
	if s.store != nil {
		s.store.OnUnsubscribed(cl, pk)
	}
}

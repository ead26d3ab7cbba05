package broker

import (
	"sync"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
)

// limitClientIDOwner names, in sockmq_limit_refusals_total, the CONNECTs
// refused because their client id belongs to another user's session.
const limitClientIDOwner = "client_id_owner"

// idClaims closes the window between the ownership check in OnConnect and
// the moment mochi registers the new session: two users connecting with
// the same unused client id at the same time must not both pass the check
// and then take the session from each other.
type idClaims struct {
	mu sync.Mutex
	m  map[string]*mqtt.Client // client id -> connection checked but not yet established
}

// claimClientID reports whether cl may use its client id: no session of
// another identity holds it, live or persistent (restored from the store
// after a restart too: the stored record keeps the user name), and no
// connection of another identity is about to establish one. The identity
// is the user name; anonymous clients share the empty one. On success the
// id is claimed for cl until its session is established or it disconnects.
func (s *Server) claimClientID(cl *mqtt.Client) bool {
	user := usernameOf(cl)
	c := &s.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	if existing, ok := s.mq.Clients.Get(cl.ID); ok && existing != cl && usernameOf(existing) != user {
		return false
	}
	if other := c.m[cl.ID]; other != nil && other != cl && !other.Closed() && usernameOf(other) != user {
		return false
	}
	if c.m == nil {
		c.m = make(map[string]*mqtt.Client)
	}
	c.m[cl.ID] = cl // a claim left by a connection that failed is replaced here
	return true
}

// releaseClientID ends cl's claim: its session is now registered with
// mochi (which the check in claimClientID sees), or it is gone.
func (s *Server) releaseClientID(cl *mqtt.Client) {
	c := &s.claims
	c.mu.Lock()
	if c.m[cl.ID] == cl {
		delete(c.m, cl.ID)
	}
	c.mu.Unlock()
}

// dropUnreadable removes from a session's queue, before id resumes it, the
// messages id may not read under the current rules. Every message was
// checked when it was queued; this catches permissions narrowed while the
// session was offline, and is a second line of defence should a session
// ever be resumed by another identity.
func (s *Server) dropUnreadable(existing *mqtt.Client, id auth.Identity) {
	if s.auth == nil {
		return
	}
	dropped := 0
	for _, pk := range existing.State.Inflight.GetAll(false) {
		// Only queued deliveries (PUBLISH) carry a topic to check; an
		// empty topic is an outbound topic alias, which mochi cannot
		// resend meaningfully either.
		if pk.FixedHeader.Type != packets.Publish || pk.TopicName == "" || s.auth.Allowed(id, pk.TopicName, auth.Read) {
			continue
		}
		if existing.State.Inflight.Delete(pk.PacketID) {
			existing.State.Inflight.IncreaseSendQuota()
			atomic.AddInt64(&s.mq.Info.Inflight, -1)
			if s.store != nil {
				s.store.OnQosDropped(existing, pk)
			}
			dropped++
		}
	}
	if dropped > 0 {
		s.log.Info("queued messages dropped on resume: no longer readable", "client", existing.ID, "user", id.Username, "dropped", dropped)
	}
}

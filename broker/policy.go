package broker

import (
	"github.com/sockmq/sockmq/auth"
)

// Authorizer decides who may connect and what they may read and write. It
// is implemented by *auth.Service; nil means everyone may do everything.
type Authorizer interface {
	// Authenticate checks CONNECT credentials.
	Authenticate(username string, password []byte, hasUsername, hasPassword bool) auth.Result
	// Allowed reports whether id may read or write topic. It is called for
	// every delivered message and must not allocate.
	Allowed(id auth.Identity, topic string, a auth.Access) bool
	// Subscription decides whether a filter may be subscribed to.
	Subscription(id auth.Identity, filter string) auth.SubDecision
	// ReadScope compiles what id may read, so that a walk over the
	// retained messages skips what id cannot read; nil means everything.
	ReadScope(id auth.Identity) *auth.ReadScope
}

// identity is the identity the Authorizer sees for a session.
func identity(owner, clientID string) auth.Identity {
	return auth.Identity{Username: owner, ClientID: clientID, Anonymous: owner == ""}
}

func (s *Server) mayWrite(id auth.Identity, t string) bool {
	return s.auth == nil || s.auth.Allowed(id, t, auth.Write)
}

// mayRead reports whether sess's owner may read topic t (the per-message
// check for partially allowed subscriptions, and for queued messages).
func (s *Server) mayRead(sess *session, t string) bool {
	return s.auth == nil || s.auth.Allowed(identity(sess.owner, sess.id), t, auth.Read)
}

// readScope is what id may read (nil: everything).
func (s *Server) readScope(id auth.Identity) *auth.ReadScope {
	if s.auth == nil {
		return nil
	}
	return s.auth.ReadScope(id)
}

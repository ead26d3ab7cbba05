package broker

import (
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

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
	// retained topics can skip whole subtrees; nil means everything.
	ReadScope(id auth.Identity) *auth.ReadScope
}

// identityOf is the identity the Authorizer sees for an MQTT client.
func identityOf(cl *mqtt.Client) auth.Identity {
	u := usernameOf(cl)
	return auth.Identity{Username: u, ClientID: cl.ID, Anonymous: u == ""}
}

// connackFor maps an authentication result to a CONNACK reason; ok is true
// when the client may connect.
func connackFor(r auth.Result) (code packets.Code, ok bool) {
	switch r {
	case auth.Allowed:
		return packets.CodeSuccess, true
	case auth.BadCredentials:
		return packets.ErrBadUsernameOrPassword, false
	default:
		return packets.ErrNotAuthorized, false
	}
}

package bridge

import (
	"encoding/json"
	"time"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Built-in procedures.
const (
	// procLogin checks {username, password} with Authorizer.Authenticate
	// and, on success, answers {username} and sends #setAuthToken.
	procLogin = "login"
	// procLogout deauthenticates the socket (#removeAuthToken).
	procLogout = "logout"
)

// useToken verifies a signed token and authenticates the socket with it.
// On failure the socket is left (or made) anonymous and the error for the
// client is returned; the caller sends #removeAuthToken.
func (s *socket) useToken(tok string) *Error {
	c, err := s.h.signer.verify(tok, time.Now())
	if err != nil {
		s.h.log.Debug("auth token refused", "client", s.id, "remote", s.remote, "error", err)
		s.deauthenticate(false, "auth token refused")
		return tokenError(err, c)
	}
	if !s.h.authz.UserExists(c.Username) {
		s.h.log.Info("auth token refused: user may no longer log in", "client", s.id, "user", c.Username, "remote", s.remote)
		s.deauthenticate(false, "auth token refused")
		return &Error{Name: ErrNameTokenInvalid, Message: "the token's user may no longer log in", Fields: map[string]any{"isBadToken": true}}
	}
	s.setIdentity(&Identity{Username: c.Username, ClientID: s.id}, c.EXP, "permissions changed on authentication")
	return nil
}

// setIdentity changes who the socket is and re-checks its subscriptions
// for the new identity. Deliveries are read-checked during the switch, so
// nothing reaches the socket that the new identity may not read.
func (s *socket) setIdentity(id *Identity, exp int64, why string) {
	s.stateMu.Lock()
	for _, m := range s.subs {
		m.check.Store(true)
	}
	s.identity.Store(id)
	s.tokenExp.Store(exp)
	s.recheckLocked(why)
	s.stateMu.Unlock()
	s.identityChanged()
}

// identityChanged tells an IdentityObserver about a login or logout of an
// open socket (one whose SocketOpened has been called).
func (s *socket) identityChanged() {
	select {
	case <-s.opened:
	default:
		return // during the handshake: SocketOpened reports the identity
	}
	if o, ok := s.h.observer.(IdentityObserver); ok {
		o.SocketIdentityChanged(s.session)
	}
}

// recheckLocked re-authorizes every subscription: refused ones are kicked
// out (#kickOut, then unsubscribed), the others get the right delivery
// mode. stateMu must be held.
func (s *socket) recheckLocked(why string) {
	id := s.identity.Load()
	blocked := id.Anonymous && !s.h.authz.AnonymousAllowed()
	for ch, m := range s.subs {
		d := SubDeny
		if !blocked {
			d = s.h.authz.Subscription(*id, m.f.filter)
		}
		if d == SubDeny {
			delete(s.subs, ch)
			s.h.hub.remove(m)
			s.enqueue(kickOutFrame(ch, why))
			s.h.log.Info("socket kicked out of channel", "client", s.id, "user", s.session.Username(), "channel", ch, "reason", why)
			continue
		}
		m.check.Store(d != SubAllow)
	}
}

func kickOutFrame(channel, message string) []byte {
	data := []byte(`{"channel":`)
	data = scproto.AppendString(data, channel)
	data = append(data, `,"message":`...)
	data = scproto.AppendString(data, message)
	data = append(data, '}')
	return scproto.AppendEvent(nil, evKickOut, data)
}

// deauthenticate makes the socket anonymous; notify sends #removeAuthToken
// so that the client drops its token.
func (s *socket) deauthenticate(notify bool, why string) {
	if notify {
		s.enqueue(scproto.AppendEvent(nil, evRemoveAuthToken, nil))
	}
	if s.identity.Load().Anonymous {
		return
	}
	s.setIdentity(&Identity{ClientID: s.id, Anonymous: true}, 0, why)
}

// checkExpiry deauthenticates a socket whose token has expired. It runs
// for every inbound frame, pongs included, so an idle socket loses its
// rights within one ping interval.
func (s *socket) checkExpiry(now time.Time) {
	if exp := s.tokenExp.Load(); exp != 0 && now.Unix() >= exp {
		s.h.log.Debug("auth token expired", "client", s.id, "user", s.session.Username())
		s.deauthenticate(true, "auth token expired")
	}
}

// reloaded re-checks the socket after the Authorizer's rules changed:
// deleted users are deauthenticated, and every channel the socket may no
// longer read is kicked out.
func (s *socket) reloaded() {
	if id := s.identity.Load(); !id.Anonymous && !s.h.authz.UserExists(id.Username) {
		s.h.log.Info("socket deauthenticated: user removed", "client", s.id, "user", id.Username)
		s.deauthenticate(true, "your account may no longer log in")
		return
	}
	s.stateMu.Lock()
	s.recheckLocked("permission revoked")
	s.stateMu.Unlock()
}

func (s *socket) onLogin(p *scproto.Packet) {
	var creds struct {
		Username *string `json:"username"`
		Password *string `json:"password"`
	}
	if len(p.Data) == 0 || p.Data[0] != '{' || json.Unmarshal(p.Data, &creds) != nil || creds.Username == nil || *creds.Username == "" {
		s.fail(p, NewError(ErrNameLogin, "login data must be {\"username\": name, \"password\": password}"))
		return
	}
	user := *creds.Username
	var pw []byte
	if creds.Password != nil {
		pw = []byte(*creds.Password)
	}
	switch s.h.authz.Authenticate(user, pw, true, creds.Password != nil) {
	case Allowed:
	case BadCredentials:
		s.h.log.Info("login failed: bad credentials", "client", s.id, "user", user, "remote", s.remote)
		s.fail(p, NewError(ErrNameLogin, "invalid username or password"))
		return
	default:
		s.h.log.Info("login failed: not authorized", "client", s.id, "user", user, "remote", s.remote)
		s.fail(p, NewError(ErrNameLogin, "not authorized to log in"))
		return
	}
	tok, c := s.h.signer.sign(user, time.Now())
	s.setIdentity(&Identity{Username: user, ClientID: s.id}, c.EXP, "permissions changed on login")
	s.h.log.Info("socket logged in", "client", s.id, "user", user, "remote", s.remote)
	reply := scproto.AppendString([]byte(`{"username":`), user)
	reply = append(reply, '}')
	data := scproto.AppendString([]byte(`{"token":`), tok)
	data = append(data, '}')
	setTok := scproto.AppendEvent(nil, evSetAuthToken, data)
	if p.HasCID {
		s.enqueue(scproto.AppendResponse(nil, p.CID, reply), setTok)
	} else {
		s.enqueue(setTok)
	}
}

func (s *socket) onLogout(p *scproto.Packet) {
	s.deauthenticate(true, "logged out")
	s.ack(p, nil)
}

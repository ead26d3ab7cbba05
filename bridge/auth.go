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
	// procLogout deauthenticates the socket (#removeAuthToken) and revokes
	// its token.
	procLogout = "logout"
)

// useToken verifies a signed token and authenticates the socket with it.
// On failure the socket is left (or made) anonymous and the error for the
// client is returned; the caller sends #removeAuthToken. On success the
// caller answers and then calls recheckToken with the token returned.
func (s *socket) useToken(raw string) (*token, *Error) {
	now := time.Now()
	c, err := s.h.signer.verify(raw, now)
	var t *token
	if err == nil {
		t = newToken(c)
		err = s.h.checkToken(t, now)
	}
	if err != nil {
		reason := tokenRefusalReason(err)
		s.h.metrics.tokensRefused.WithLabelValues(reason).Inc()
		if reason == "invalid" || reason == "expired" {
			s.h.log.Debug("auth token refused", "client", s.id, "remote", s.remote, "error", err)
		} else {
			s.h.failLog.Info("token_refused", "auth token refused", "client", s.id, "user", c.Username, "remote", s.remote, "reason", reason)
		}
		s.deauthenticate(false, "auth token refused", false)
		return nil, tokenError(err, c)
	}
	s.setIdentity(&Identity{Username: c.Username, ClientID: s.id}, t, "permissions changed on authentication", false)
	return t, nil
}

// recheckToken deauthenticates the socket if t, which it was just given,
// is no longer valid: a reload or a revocation that ran between the check
// and the socket taking the token did not see the socket.
func (s *socket) recheckToken(t *token) {
	if err := s.h.checkToken(t, time.Now()); err != nil {
		s.dropToken(t, "your login is no longer valid")
	}
}

// setIdentity changes who the socket is and re-checks its subscriptions
// for the new identity. Deliveries are read-checked during the switch, so
// nothing reaches the socket that the new identity may not read. why and
// clean describe the end of the session, if the change ends it.
func (s *socket) setIdentity(id *Identity, t *token, why string, clean bool) {
	s.stateMu.Lock()
	s.swapIdentityLocked(id, t, why)
	s.stateMu.Unlock()
	s.updateAdmission(why, clean)
}

func (s *socket) swapIdentityLocked(id *Identity, t *token, why string) {
	for _, m := range s.subs {
		m.check.Store(true)
	}
	s.identity.Store(id)
	s.h.tokens.move(s, s.tok.Swap(t), t)
	s.recheckLocked(why)
}

// dropToken deauthenticates the socket (with #removeAuthToken) if it still
// holds t, and reports whether it did.
func (s *socket) dropToken(t *token, why string) bool {
	s.stateMu.Lock()
	if s.tok.Load() != t {
		s.stateMu.Unlock()
		return false
	}
	s.enqueue(scproto.AppendEvent(nil, evRemoveAuthToken, nil))
	s.swapIdentityLocked(&Identity{ClientID: s.id, Anonymous: true}, nil, why)
	s.stateMu.Unlock()
	s.updateAdmission(why, false)
	return true
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
// so that the client drops its token. clean tells whether the socket chose
// it (a logout) for the end of its session.
func (s *socket) deauthenticate(notify bool, why string, clean bool) {
	if notify {
		s.enqueue(scproto.AppendEvent(nil, evRemoveAuthToken, nil))
	}
	if s.identity.Load().Anonymous {
		return
	}
	s.setIdentity(&Identity{ClientID: s.id, Anonymous: true}, nil, why, clean)
}

// logout deauthenticates the socket at its own request and revokes the
// token it held, so that no other socket can use it until it expires.
func (s *socket) logout(notify bool, why string) {
	t := s.tok.Load()
	s.deauthenticate(notify, why, true)
	if t != nil {
		s.h.revoke(s, t)
		s.h.log.Info("socket logged out; token revoked", "client", s.id, "user", t.user, "remote", s.remote)
	}
}

// checkExpiry deauthenticates a socket whose token has expired. It runs
// for every inbound frame, pongs included, so an idle socket loses its
// rights within one ping interval.
func (s *socket) checkExpiry(now time.Time) {
	if t := s.tok.Load(); t != nil && now.Unix() >= t.exp && s.dropToken(t, "auth token expired") {
		s.h.log.Debug("auth token expired", "client", s.id, "user", t.user)
	}
}

// reloaded re-checks the socket after the Authorizer's rules changed: a
// socket whose token no longer matches its user's credentials (password
// changed, user deleted or re-created) is deauthenticated, and every
// channel the socket may no longer read is kicked out.
func (s *socket) reloaded() {
	if t := s.tok.Load(); t != nil {
		if err := s.h.checkToken(t, time.Now()); err != nil {
			if s.dropToken(t, "your login is no longer valid") {
				s.h.log.Info("socket deauthenticated after auth reload", "client", s.id, "user", t.user, "reason", tokenRefusalReason(err))
			}
			return
		}
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
	// The stamp is read before the password is verified: if the entry
	// changes in between, the token is bound to the old one and refused.
	stamp, _ := s.h.authz.CredentialStamp(user)
	if res := s.h.authz.Authenticate(user, pw, true, creds.Password != nil); res != Allowed {
		s.loginFailed(p, user, res)
		return
	}
	raw, c := s.h.signer.sign(user, stamp, time.Now())
	t := newToken(c)
	s.setIdentity(&Identity{Username: user, ClientID: s.id}, t, "permissions changed on login", false)
	s.h.log.Info("socket logged in", "client", s.id, "user", user, "remote", s.remote)
	reply := scproto.AppendString([]byte(`{"username":`), user)
	reply = append(reply, '}')
	data := scproto.AppendString([]byte(`{"token":`), raw)
	data = append(data, '}')
	setTok := scproto.AppendEvent(nil, evSetAuthToken, data)
	if p.HasCID {
		s.enqueue(scproto.AppendResponse(nil, p.CID, reply), setTok)
	} else {
		s.enqueue(setTok)
	}
	s.recheckToken(t)
}

func (s *socket) onLogout(p *scproto.Packet) {
	s.logout(true, "logged out")
	s.ack(p, nil)
}

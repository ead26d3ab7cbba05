package bridge

import (
	"crypto/hmac"
	"sync"
	"time"
)

// Revocations keeps the ids of revoked tokens (the token of a socket that
// logged out) until the tokens expire. The bridge's own implementation
// keeps them in memory and, with a data directory, in
// <data_dir>/bridge-revoked-tokens, so a restart does not bring a
// logged-out token back. A multi-node deployment plugs in one shared by
// every node through [Options].Revocations.
type Revocations interface {
	// Revoke records that the token jti is revoked until exp (unix
	// seconds, the token's expiry) and then tells every OnRevoke callback,
	// on every node that shares the list. An error means the revocation
	// may not survive a restart (or reach other nodes); it is in force on
	// this node all the same.
	Revoke(jti string, exp int64) error
	// Revoked reports whether jti is revoked. It runs on every
	// authentication with a token and must be fast.
	Revoked(jti string) bool
	// OnRevoke registers fn to run for every revocation, including those
	// made through this value; the bridge uses it to deauthenticate the
	// live sockets holding the token. fn may run on any goroutine and
	// returns quickly.
	OnRevoke(fn func(jti string))
}

// token is what a socket keeps of the token it is authenticated with.
type token struct {
	user string
	jti  string
	exp  int64 // unix seconds
	cred string
}

func newToken(c tokenClaims) *token {
	return &token{user: c.Username, jti: c.JTI, exp: c.EXP, cred: c.Cred}
}

// checkToken checks what can change after a token was signed: its expiry,
// its revocation and its user's credentials.
func (h *Handler) checkToken(t *token, now time.Time) error {
	if now.Unix() >= t.exp {
		return errTokenExpired
	}
	if h.revocations.Revoked(t.jti) {
		return errTokenRevoked
	}
	stamp, ok := h.authz.CredentialStamp(t.user)
	if !ok {
		return errTokenUserGone
	}
	if !hmac.Equal([]byte(h.signer.credMark(t.user, stamp)), []byte(t.cred)) {
		return errTokenStale
	}
	return nil
}

// tokenHolders indexes the open sockets by the id of their token, so that
// a revocation finds the sockets to deauthenticate without a scan.
type tokenHolders struct {
	mu sync.Mutex
	m  map[string][]*socket
}

// move records that s now holds next instead of prev (either may be nil).
func (th *tokenHolders) move(s *socket, prev, next *token) {
	if prev == next {
		return
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if prev != nil {
		list := th.m[prev.jti]
		for i, x := range list {
			if x == s {
				list[i] = list[len(list)-1]
				list = list[:len(list)-1]
				break
			}
		}
		if len(list) == 0 {
			delete(th.m, prev.jti)
		} else {
			th.m[prev.jti] = list
		}
	}
	if next != nil {
		th.m[next.jti] = append(th.m[next.jti], s)
	}
}

func (th *tokenHolders) holders(jti string) []*socket {
	th.mu.Lock()
	defer th.mu.Unlock()
	return append([]*socket(nil), th.m[jti]...)
}

// revoke revokes the token t that socket s held (logout) until it expires.
func (h *Handler) revoke(s *socket, t *token) {
	if err := h.revocations.Revoke(t.jti, t.exp); err != nil {
		h.log.Warn("token revocation not persisted: it is in force until a restart", "client", s.id, "user", t.user, "error", err)
	}
}

// revoked deauthenticates the open sockets that hold the revoked token.
func (h *Handler) revoked(jti string) {
	for _, s := range h.tokens.holders(jti) {
		if t := s.tok.Load(); t != nil && t.jti == jti && s.dropToken(t, "auth token revoked") {
			h.log.Info("socket deauthenticated: its token was revoked", "client", s.id, "user", t.user, "remote", s.remote)
		}
	}
}

package bridge

import (
	"time"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Password guessing through login is slowed down without ever delaying
// or refusing a correct password because of someone else's failures: the
// password is verified at once and a correct one answered at once; only
// the answer to a failed login is delayed, by the larger of the delay for
// the remote address's recent failures (the shared limit.LoginGuard) and
// the delay for this socket's failures (LoginGuard.DelayFor). Until that
// answer is sent the socket handles nothing else: every request gets
// LoginPendingError at once (pongs still count, so the socket does not
// time out). The socket is closed with 4502 after the answer to its
// bridge.max_failed_logins-th failure.

// loginFailed answers a failed login, after its delay if it has one.
func (s *socket) loginFailed(p *scproto.Packet, user string, res AuthResult) {
	now := time.Now()
	s.loginFailures++
	n := s.loginFailures
	delay := max(s.h.guard.Failed(s.remote, now), s.h.guard.DelayFor(n))
	last := n >= s.h.cfg.MaxFailedLogins
	s.h.metrics.loginFailures.Inc()
	msg, why := "invalid username or password", "bad credentials"
	if res != BadCredentials {
		msg, why = "not authorized to log in", "not authorized"
	}
	s.h.failLog.Info("login_failed", "login failed: "+why, "client", s.id, "user", user, "remote", s.remote,
		"socket_failures", n, "answer_delay", delay.String())
	e := NewError(ErrNameLogin, msg)
	hasCID, cid := p.HasCID, p.CID
	answer := func() {
		// The socket takes requests again before the client can learn of
		// the failure: a request it sends right after the answer is handled.
		s.loginPending.Store(false)
		if hasCID {
			s.enqueue(scproto.AppendErrorResponse(nil, cid, e.wire()))
		}
		if last {
			s.h.limits.Hit("bridge_max_failed_logins", "socket closed: too many failed logins",
				"client", s.id, "user", user, "remote", s.remote, "max_failed_logins", s.h.cfg.MaxFailedLogins)
			s.close(CloseTooManyFailedLogins, "Too many failed logins", true)
		}
	}
	if delay <= 0 {
		answer()
		return
	}
	s.h.metrics.loginDelayed.Inc()
	s.loginPending.Store(true)
	time.AfterFunc(delay, answer)
}

// refusePending refuses a request that arrives while a failed login's
// answer is delayed, and reports whether it did.
func (s *socket) refusePending(p *scproto.Packet) bool {
	if !s.loginPending.Load() {
		return false
	}
	s.fail(p, NewError(ErrNameLoginPending, "the answer to a failed login on this socket is being delayed; nothing else is handled until it comes"))
	return true
}

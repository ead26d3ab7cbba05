package bridge

import "time"

// A socket is admitted (a session, reported to the Observer) while it is
// authenticated or anonymous access is on. With anonymous access off, a
// socket that is not logged in is no session: it may only log in, and it
// is closed with 4501 unless it does so within bridge.login_timeout of its
// handshake, or of the moment it lost its login (logout, expired or
// revoked token, deleted user).

// admissible reports whether the socket's current identity makes it a
// session.
func (s *socket) admissible() bool {
	return !s.identity.Load().Anonymous || s.h.authz.AnonymousAllowed()
}

// sessionStarted runs once, after the handshake reply is queued.
func (s *socket) sessionStarted() {
	s.obsMu.Lock()
	s.live = true
	s.obsMu.Unlock()
	s.updateAdmission("", false)
}

// updateAdmission brings the Observer and the login timeout up to date
// after the socket's identity changed: it opens the session of a socket
// that became admissible, reports a new identity of an admitted one, and
// ends the session (CloseInfo.Open) of one that is no longer admissible.
// why and clean describe a session end.
func (s *socket) updateAdmission(why string, clean bool) {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	if !s.live || s.ended {
		return // during the handshake (sessionStarted follows), or closed
	}
	obs := s.h.observer
	switch want := s.admissible(); {
	case want && !s.admitted:
		s.admitted = true
		s.stopLoginTimerLocked()
		if obs != nil {
			obs.SocketOpened(s.session)
		}
	case want:
		if o, ok := obs.(IdentityObserver); ok {
			o.SocketIdentityChanged(s.session)
		}
	case s.admitted:
		s.admitted = false
		if obs != nil {
			obs.SocketClosed(s.session, CloseInfo{Open: true, Clean: clean, Reason: why})
		}
		s.armLoginTimerLocked()
	default:
		s.armLoginTimerLocked()
	}
}

// sessionEnded runs once, at close, and returns whether the socket was
// admitted (its session must then be reported closed).
func (s *socket) sessionEnded() bool {
	s.obsMu.Lock()
	defer s.obsMu.Unlock()
	s.ended = true
	s.stopLoginTimerLocked()
	was := s.admitted
	s.admitted = false
	return was
}

// armLoginTimerLocked starts the login timeout unless it runs already.
func (s *socket) armLoginTimerLocked() {
	if s.loginTimer != nil {
		return
	}
	gen := s.loginGen
	s.loginTimer = time.AfterFunc(s.h.cfg.LoginTimeout, func() { s.loginTimedOut(gen) })
}

func (s *socket) stopLoginTimerLocked() {
	if s.loginTimer != nil {
		s.loginTimer.Stop()
		s.loginTimer = nil
		s.loginGen++
	}
}

// loginTimedOut closes a socket that is still not admitted when its login
// timeout (generation gen) fires.
func (s *socket) loginTimedOut(gen uint64) {
	s.obsMu.Lock()
	stale := gen != s.loginGen || s.admitted || s.ended
	s.obsMu.Unlock()
	if stale {
		return
	}
	s.h.limits.Hit("bridge_login_timeout", "socket closed: not logged in within bridge.login_timeout",
		"client", s.id, "remote", s.remote, "login_timeout", s.h.cfg.LoginTimeout.String())
	s.close(CloseLoginTimeout, "Login timeout: log in within "+s.h.cfg.LoginTimeout.String()+" (anonymous sockets are not accepted)", true)
}

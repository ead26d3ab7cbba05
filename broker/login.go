package broker

import (
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/sockmq/sockmq/internal/limit"
)

// limitLoginDelay names, in sockmq_limit_refusals_total, the failed logins
// whose answer was delayed because their address failed repeatedly.
const limitLoginDelay = "login_delay"

// LoginGuard returns the guard that slows down failed MQTT logins per
// remote address. Pass it to the SocketCluster bridge so that failures over
// either protocol count together.
func (s *Server) LoginGuard() *limit.LoginGuard { return s.loginGuard.Load() }

// SetLoginGuard makes the broker count failed logins in g, for example a
// guard shared with the bridge. It is safe to call at any time; failures
// counted by the previous guard are forgotten.
func (s *Server) SetLoginGuard(g *limit.LoginGuard) {
	if g != nil {
		s.loginGuard.Store(g)
	}
}

// slowFailedLogin delays the answer to a CONNECT that gave a wrong password,
// by a time that grows with the recent failures of its remote address
// (limit.LoginGuard). The password was verified at once and a correct one
// is answered at once: only failures wait, each on its own connection, so
// the guessing rate of one address drops from thousands per second to a
// few without delaying anyone else. Shutdown cuts the wait short.
func (s *Server) slowFailedLogin(cl *mqtt.Client) {
	d := s.loginGuard.Load().Failed(cl.Net.Remote, time.Now())
	if d <= 0 {
		return
	}
	s.limits.Hit(limitLoginDelay, "failed logins slowed down: repeated wrong passwords from one address",
		"client", cl.ID, "remote", cl.Net.Remote, "delay", d)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-s.quit:
	}
}

package broker

import (
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/limit"
)

// Names of the broker's limits in sockmq_limit_refusals_total{limit}.
const (
	limitMaxQueued             = "max_queued_messages"
	limitMaxInflight           = "max_inflight"
	limitMaxSubscriptions      = "max_subscriptions"
	limitMaxSubscriptionsTotal = "max_subscriptions_total"
	limitSubscribeRate         = "subscribe_rate"
	limitLoginDelay            = "login_delay"
	limitClientIDOwner         = "client_id_owner"
	limitThrottle              = "throttle_queued"
)

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

// refuseLogin answers a CONNECT whose credentials were wrong. The password
// was verified at once (a correct one is answered at once); only the
// failure waits, by a time that grows with the recent failures of the
// remote address (limit.LoginGuard), so that the guessing rate of one
// address drops from thousands per second to a few without delaying
// anyone else. The connection reads nothing more meanwhile, and Shutdown
// cuts the wait short.
func (c *conn) refuseLogin(code packets.Code, user string) error {
	s := c.s
	s.authLog.Info("auth_failed", "connection refused: authentication failed", "client", c.clientID, "user", user, "remote", c.remote, "reason", code.Reason)
	d := s.loginGuard.Load().Failed(c.remote, time.Now())
	if d <= 0 || code != packets.ErrBadUsernameOrPassword {
		return c.refuseQuiet(code)
	}
	s.limits.Hit(limitLoginDelay, "failed logins slowed down: repeated wrong passwords from one address",
		"client", c.clientID, "remote", c.remote, "delay", d)
	c.wmu.Lock()
	c.closeAfter = true // the CONNACK comes later; cleanup waits for it
	c.wmu.Unlock()
	c.cause.CompareAndSwap(nil, &endCause{err: code, reason: ReasonWill})
	c.state.Store(stClosing)
	s.clock.refuseLater(c, code, d)
	return nil
}

// newSubscribeBucket is the per-connection limits.subscribe_rate bucket.
func (s *Server) newSubscribeBucket() limit.Bucket {
	return limit.NewBucket(s.cfg.Limits.SubscribeRate, s.cfg.Limits.SubscribeBurst)
}

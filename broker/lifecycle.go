package broker

import (
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// handleDisconnect ends the connection at the client's request. MQTT 5
// reason 0x04 keeps the will; a new session expiry may be given, but not
// from zero [MQTT-3.14.2-2].
func (c *conn) handleDisconnect(fh packets.FixedHeader, body []byte) error {
	reason := byte(0)
	if c.version == 5 {
		pk := getPacket()
		defer putPacket(pk)
		pk.FixedHeader = fh
		pk.ProtocolVersion = 5
		if err := safeDecode(pk.DisconnectDecode, body); err != nil {
			return err
		}
		reason = pk.ReasonCode
		if pk.Properties.SessionExpiryIntervalFlag {
			sess := c.sess
			sess.mu.Lock()
			if sess.expiry == 0 && pk.Properties.SessionExpiryInterval != 0 {
				sess.mu.Unlock()
				return packets.ErrProtocolViolationZeroNonZeroExpiry
			}
			exp := pk.Properties.SessionExpiryInterval
			if max := c.s.cfg.Limits.MaxSessionExpiry; max > 0 && time.Duration(exp)*time.Second > max {
				exp = uint32(max / time.Second)
			}
			sess.expiry = exp
			sess.mu.Unlock()
		}
	}
	ec := &endCause{err: packets.CodeDisconnect, reason: ReasonClean}
	if reason == packets.CodeDisconnectWillMessage.Code {
		ec.reason = ReasonWill
	}
	c.end(ec)
	return nil
}

// cleanup runs when the connection is over: the session is detached (and
// ends if it does not outlive the connection), the will is published or
// scheduled, and listeners hear of it.
func (c *conn) cleanup() {
	s := c.s
	// A final packet (CONNACK refusal, DISCONNECT) is written before the
	// connection closes; disconnect and refuse bound the wait.
	c.wmu.Lock()
	for c.closeAfter && !c.closed && !c.written {
		c.ackRoom.Wait()
	}
	drain := c.written && !c.closed
	c.wmu.Unlock()
	if drain {
		c.linger()
	}
	c.closeNet()
	defer close(c.detached)
	cause := c.cause.Load()
	if cause == nil {
		cause = &endCause{err: errConnectionLost, reason: ReasonWill}
	}
	sess := c.sess
	if sess == nil {
		s.connectionRefused(c, cause)
		return
	}
	s.metrics.clients.Add(-1)
	now := time.Now()
	sess.mu.Lock()
	if sess.conn != c {
		sess.mu.Unlock()
		return
	}
	sess.conn = nil
	sess.online.Store(false)
	sess.disconnectedAt = now
	sess.unwire()
	s.throttle.account(sess) // offline: its backlog no longer counts
	will := sess.will
	switch {
	case cause.reason == ReasonClean:
		if will != nil {
			s.clusterClearWill(sess.id)
		}
		will = nil // discarded by a normal DISCONNECT [MQTT-3.1.2-10]
	case (cause.reason == ReasonTakeover || cause.reason == ReasonMoved) && will != nil && will.delay > 0:
		if cause.reason == ReasonMoved {
			s.clusterClearWill(sess.id) // this node's copy; the new node stored its own
		}
		will = nil // the session continues on the new connection
	}
	ends := sess.expiry == 0 || sess.gone || cause.reason == ReasonMoved
	delayed := will != nil && will.delay > 0 && !ends
	if !delayed {
		sess.will = nil
	}
	gen := sess.timerGen
	if sess.persistent && !ends {
		s.store.Write(func(w *store.Writer) { w.PutSession(s.sessionRecord(sess)) })
	}
	expiry := sess.expiry
	sess.mu.Unlock()

	if will != nil && !delayed {
		s.publishWill(sess.id, sess.owner, will)
	}
	switch {
	case ends && cause.reason == ReasonMoved && s.parkMoved(sess):
		// kept for the node the client moved to (session_export.go)
	case ends:
		s.endSession(sess)
	default:
		if delayed {
			s.clock.scheduleWill(sess, gen, now.Add(time.Duration(min(will.delay, expiry))*time.Second))
		}
		if expiry != store.NeverExpires {
			s.clock.scheduleExpiry(sess, gen, now.Add(time.Duration(expiry)*time.Second))
		}
	}
	if cause.reason != ReasonTakeover {
		ev := c.sessionEvent(false)
		ev.Reason = cause.reason
		s.emit(ev)
	}
	s.logEnd(c, cause)
}

var errConnectionLost = errors.New("connection lost")

// endSession removes sess from the table (if it is still there) and
// forgets it.
func (s *Server) endSession(sess *session) {
	s.sessions.mu.Lock()
	current := s.sessions.m[sess.id] == sess
	if current {
		delete(s.sessions.m, sess.id)
	}
	s.sessions.mu.Unlock()
	s.dropSession(sess)
	if current {
		s.clusterSessionEnded(sess.id)
	}
}

// publishWill publishes a will, if its owner may still write its topic.
func (s *Server) publishWill(clientID, owner string, w *pendingWill) {
	if !s.clusterMaySendWill(clientID) {
		return // sent by another node while this one was considered dead
	}
	id := identity(owner, clientID)
	if topic.BrokerOnly(w.m.topic) || !s.mayWrite(id, w.m.topic) {
		s.log.Info("will dropped: topic no longer permitted", "client", clientID, "user", owner, "topic", w.m.topic)
		return
	}
	// A will is a new message each time it is published: its creation and
	// expiry count from now.
	m := *w.m
	m.ref = store.BodyRef{}
	now := time.Now()
	m.created = now.UnixMilli()
	m.expiry = expiryOf(now, w.expiryInterval, s.cfg.Limits.MaxMessageExpiry)
	_ = s.forward(&m, false) // never fails when not durable
	s.route(&m, nil, 0)
	s.metrics.willsSent.Add(1)
}

// publishWillFromClock publishes a will that the clock's goroutine found
// due. On a cluster node publishing one waits for the cluster (the claim in
// its will store, the retained copy of a retained will), bounded by the
// cluster's timeouts but long enough to hold up every other timer
// (keepalives, expiries, other wills) if it ran on the clock: there it runs
// on a goroutine of its own, which Shutdown waits for. A single node
// publishes at once.
func (s *Server) publishWillFromClock(clientID, owner string, w *pendingWill) {
	if s.backplane == nil && s.cluster == nil {
		s.publishWill(clientID, owner, w)
		return
	}
	s.willWG.Add(1)
	go func() {
		defer s.willWG.Done()
		s.publishWill(clientID, owner, w)
	}()
}

// willDue runs when a delayed will's time has come (or the session
// expires first): it is published unless the session reconnected.
func (s *Server) willDue(sess *session, gen uint64) {
	sess.mu.Lock()
	if sess.timerGen != gen || sess.conn != nil || sess.will == nil {
		sess.mu.Unlock()
		return
	}
	w := sess.will
	sess.will = nil
	if sess.persistent && !sess.gone {
		s.store.Write(func(wr *store.Writer) { wr.PutSession(s.sessionRecord(sess)) })
	}
	sess.mu.Unlock()
	s.publishWillFromClock(sess.id, sess.owner, w)
}

// sessionExpired ends a session whose expiry passed while it was offline;
// a will still pending is published first.
func (s *Server) sessionExpired(sess *session, gen uint64) {
	sess.mu.Lock()
	if sess.timerGen != gen || sess.conn != nil || sess.gone {
		sess.mu.Unlock()
		return
	}
	w := sess.will
	sess.will = nil
	sess.mu.Unlock()
	if w != nil {
		s.publishWillFromClock(sess.id, sess.owner, w)
	}
	s.endSession(sess)
	s.log.Debug("session expired", "client", sess.id)
}

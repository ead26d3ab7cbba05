package broker

import (
	"time"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// restore rebuilds retained messages and persistent sessions from the
// store. Sessions come back offline; their timers start with Start.
func (s *Server) restore(snap *store.Snapshot) {
	msgs := make(map[uint64]*msg, len(snap.Bodies))
	body := func(id uint64) *msg {
		if m := msgs[id]; m != nil {
			return m
		}
		r := snap.Bodies[id]
		if r == nil {
			return nil
		}
		m := msgFromRecord(r, snap.Refs[id])
		msgs[id] = m
		return m
	}
	for _, r := range snap.Retained {
		if m := body(r.BodyID); m != nil {
			s.retained.update(r.Topic, m, nil)
		}
	}
	s.metrics.retained.Store(int64(s.retained.count()))
	var expiring []queuedExpiry
	for i := range snap.Sessions {
		st := &snap.Sessions[i]
		rec := st.Session
		sess := &session{id: rec.ClientID, owner: rec.Owner, version: rec.ProtocolVersion, expiry: rec.Expiry, persistent: true}
		if rec.DisconnectedAt != 0 {
			sess.disconnectedAt = time.UnixMilli(rec.DisconnectedAt)
		}
		if w := rec.Will; w != nil {
			wm := msgFromRecord(&w.Message, 0)
			wm.ref = store.BodyRef{}
			sess.will = &pendingWill{m: wm, delay: w.Delay, expiryInterval: w.ExpiryInterval}
		}
		id := identity(rec.Owner, rec.ClientID)
		for _, sr := range st.Subs {
			sub := &subscription{sess: sess, filter: sr.Filter, qos: sr.QoS, noLocal: sr.NoLocal, rap: sr.RetainAsPublished, rh: sr.RetainHandling, id: sr.ID}
			sub.group, sub.inner, _ = topic.SplitShared(sr.Filter)
			if sub.group == "" {
				sub.inner = sr.Filter
			}
			if s.auth != nil {
				switch s.auth.Subscription(id, sub.inner) {
				case auth.SubDeny:
					s.store.Write(func(w *store.Writer) { w.DeleteSubscription(rec.ClientID, sr.Filter) })
					continue
				case auth.SubPartial:
					sub.partial.Store(true)
				}
			}
			if sess.subs == nil {
				sess.subs = make(map[string]*subscription)
			}
			sess.subs[sub.filter] = sub
			s.subs.add(sub)
			s.metrics.subscriptions.Add(1)
		}
		sess.nsubs.Store(int32(len(sess.subs)))
		for _, o := range st.Out {
			m := body(o.MsgID)
			if m == nil {
				continue
			}
			e := outEntry{m: m, seq: o.Seq, qos: o.QoS, state: o.State}
			if o.Retain {
				e.flags |= efRetain
			}
			if o.State != store.OutQueued {
				// Sent before: it keeps its packet id (a resend must use
				// it). An entry never sent gets one when it is.
				e.pid = o.PacketID
				e.flags |= efSentStored
			}
			sess.push(e, o.SubIDs)
			sess.nextSeq = o.Seq + 1
			s.metrics.queued.Add(1)
			if m.expiry != 0 {
				expiring = append(expiring, queuedExpiry{sess, m})
			}
		}
		for _, pid := range st.Inbound2 {
			if sess.in2 == nil {
				sess.in2 = make(map[uint16]struct{})
			}
			sess.in2[pid] = struct{}{}
		}
		s.sessions.m[sess.id] = sess
	}
	s.restoredExpiry = expiring
	s.restored = snap
	if n := len(snap.Sessions) + len(snap.Retained); n > 0 {
		s.log.Info("store restored", "sessions", len(snap.Sessions), "retained", len(snap.Retained), "messages", len(msgs))
	}
}

// resumeRestored starts the timers of restored sessions: wills that were
// pending when the broker stopped (the immediate will of a session whose
// connection was open at a crash is published now), session expiry, and
// the expiry of retained messages.
func (s *Server) resumeRestored() {
	if s.restored == nil {
		return
	}
	s.restored = nil
	now := time.Now()
	for _, sess := range s.sessions.all() {
		sess.mu.Lock()
		gen := sess.timerGen
		since := sess.disconnectedAt
		if since.IsZero() {
			since = now // connected when the broker stopped: it ended now
			sess.disconnectedAt = now
		}
		w := sess.will
		expiry := sess.expiry
		if w != nil && w.delay == 0 {
			sess.will = nil
			s.store.Write(func(wr *store.Writer) { wr.PutSession(s.sessionRecord(sess)) })
		}
		sess.mu.Unlock()
		if w != nil {
			if w.delay == 0 {
				s.publishWill(sess.id, sess.owner, w)
			} else {
				s.clock.scheduleWill(sess, gen, since.Add(time.Duration(min(w.delay, expiry))*time.Second))
			}
		}
		if expiry != store.NeverExpires {
			s.clock.scheduleExpiry(sess, gen, since.Add(time.Duration(expiry)*time.Second))
		}
	}
	for _, q := range s.restoredExpiry {
		s.clock.expireQueued(q.sess, q.m)
	}
	s.restoredExpiry = nil
	s.retained.match("#", nil, func(m *msg, _ bool) bool {
		if m.expiry != 0 {
			s.clock.expireRetained(m)
		}
		return true
	})
}

// queuedExpiry is a restored queued message with an expiry, scheduled at Start.
type queuedExpiry struct {
	sess *session
	m    *msg
}

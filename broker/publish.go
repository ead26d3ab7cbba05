package broker

import (
	"strings"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// handlePublish handles a PUBLISH from the client.
func (c *conn) handlePublish(fh packets.FixedHeader, body []byte) error {
	s := c.s
	pk := getPacket()
	defer putPacket(pk)
	pk.FixedHeader = fh
	pk.ProtocolVersion = c.version
	if err := safeDecode(pk.PublishDecode, body); err != nil {
		return err
	}
	if fh.Qos > 0 && pk.PacketID == 0 {
		return packets.ErrProtocolViolationNoPacketID
	}
	s.metrics.messagesIn.Add(1)
	c.published = true

	// Topic aliases [MQTT-3.3.2-12].
	t := pk.TopicName
	if c.version == 5 && pk.Properties.TopicAliasFlag {
		alias := pk.Properties.TopicAlias
		if alias == 0 || alias > topicAliasMax {
			return packets.ErrTopicAliasInvalid
		}
		if t != "" {
			if c.aliases == nil {
				c.aliases = make(map[uint16]string)
			}
			c.aliases[alias] = strings.Clone(t)
		} else if t = c.aliases[alias]; t == "" {
			return packets.ErrProtocolViolationNoTopic
		}
	}
	if t == "" || strings.ContainsAny(t, "+#") {
		return packets.ErrTopicNameInvalid
	}
	if len(pk.Properties.SubscriptionIdentifier) > 0 {
		return packets.ErrProtocolViolationSurplusSubID
	}
	sess := c.sess

	if fh.Qos > 0 {
		sess.mu.Lock()
		_, dup := sess.in2[pk.PacketID]
		unanswered := len(sess.in2) + int(c.pubacksQueued.Load())
		sess.mu.Unlock()
		// Inbound QoS 2 already received (PUBREC sent, PUBREL awaited): a
		// resend, not a new message [MQTT-4.3.3-9].
		if dup && fh.Qos == 2 {
			c.sendAck(ackPacket(packets.Pubrec, pk.PacketID, c.version, 0), 0)
			return nil
		}
		// More unanswered QoS 1/2 publishes than the Receive Maximum the
		// broker announced [MQTT-3.3.4-9].
		if c.version == 5 && unanswered >= serverReceiveMax {
			return packets.ErrReceiveMaximum
		}
	}

	// Permission.
	if topic.BrokerOnly(t) || !s.mayWrite(c.identity, t) {
		s.metrics.publishRefused.Add(1)
		s.log.Debug("publish refused", "client", c.clientID, "user", c.identity.Username, "topic", t)
		switch {
		case c.version == 5 && fh.Qos == 1:
			c.sendAck(ackPacket(packets.Puback, pk.PacketID, 5, packets.ErrNotAuthorized.Code), 0)
		case c.version == 5 && fh.Qos == 2:
			c.sendAck(ackPacket(packets.Pubrec, pk.PacketID, 5, packets.ErrNotAuthorized.Code), 0)
		case fh.Qos == 1: // MQTT 3.1.1 cannot say no: acknowledge and drop, as mosquitto does
			c.sendAck(ackPacket(packets.Puback, pk.PacketID, c.version, 0), 0)
		case fh.Qos == 2:
			c.trackInbound2(pk.PacketID) // the client continues with PUBREL
			c.sendAck(ackPacket(packets.Pubrec, pk.PacketID, c.version, 0), 0)
		}
		return nil
	}

	m := newMsg(t, pk, c.clientID, time.Now(), s.cfg.Limits.MaxMessageExpiry)
	if err := s.forward(m, fh.Qos > 0); err != nil {
		return c.refuseUnstored(fh.Qos, pk.PacketID, err)
	}
	var gate uint64
	if fh.Qos == 2 {
		gate = c.trackInbound2(pk.PacketID)
	}
	gate = max(gate, s.route(m, sess, gate))
	switch fh.Qos {
	case 1:
		c.sendPuback(ackPacket(packets.Puback, pk.PacketID, c.version, 0), gate)
	case 2:
		c.sendAck(ackPacket(packets.Pubrec, pk.PacketID, c.version, 0), gate)
	}
	return nil
}

// trackInbound2 records that PUBREC is being sent for an inbound QoS 2
// packet id, in the store too for a persistent session; it returns the
// store batch to wait for.
func (c *conn) trackInbound2(pid uint16) uint64 {
	sess := c.sess
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.in2 == nil {
		sess.in2 = make(map[uint16]struct{})
	}
	sess.in2[pid] = struct{}{}
	if sess.persistent {
		return c.s.store.Write(func(w *store.Writer) { w.PutInbound2(sess.id, pid) })
	}
	return 0
}

// target is one session a message goes to, after merging overlapping
// subscriptions of that session.
type target struct {
	sub    *subscription
	qos    byte
	retain bool
	subIDs []uint32
}

var routePool = sync.Pool{New: func() any { return &routeBuf{} }}

type routeBuf struct {
	subs    []*subscription
	targets []target
	enc     pubCache
}

// route stores m as retained if asked and delivers it to every matching
// subscription. from is the publishing session (nil for the broker).
// Deliveries are held until store batch sendGate is committed (used for
// inbound QoS 2, so that a message is never seen by anyone before the
// broker can recognise the publisher's resend of it). It returns the store
// batch that holds what the message caused (retained copy, queued copies
// for persistent sessions): the publisher's acknowledgement waits for it.
func (s *Server) route(m *msg, from *session, sendGate uint64) uint64 {
	var gate uint64
	if m.retain {
		gate = s.retain(m)
	}
	rb := routePool.Get().(*routeBuf)
	rb.subs = s.subs.match(m.topic, rb.subs[:0])
	rb.targets = s.targets(m, from, rb.subs, rb.targets[:0])
	now := time.Now()
	rb.enc.reset(m, now.Unix())
	for i := range rb.targets {
		tg := &rb.targets[i]
		if tg.sub.fn != nil {
			tg.sub.fn(m.message())
			continue
		}
		gate = max(gate, s.deliver(tg.sub.sess, m, tg.qos, tg.retain, tg.subIDs, sendGate, now, &rb.enc))
	}
	rb.enc.reset(nil, 0)
	clear(rb.subs)
	clear(rb.targets)
	routePool.Put(rb)
	return gate
}

// targets turns matching subscriptions into one delivery per session:
// QoS is the highest of the session's matching subscriptions, and every
// subscription identifier is sent [MQTT-3.3.4-2] [MQTT-3.3.4-3]. No Local
// and the per-message read check apply per subscription.
func (s *Server) targets(m *msg, from *session, subs []*subscription, out []target) []target {
	hidden := topic.Hidden(m.topic)
	var merged map[*session]int
	for _, sub := range subs {
		if sub.fn != nil {
			out = append(out, target{sub: sub})
			continue
		}
		sess := sub.sess
		if hidden || (sub.noLocal && sess == from) {
			continue
		}
		if sub.partial.Load() && !s.mayRead(sess, m.topic) {
			continue
		}
		qos := min(m.qos, sub.qos)
		retain := sub.rap && m.retain
		if sess.nsubs.Load() > 1 {
			if merged == nil {
				merged = make(map[*session]int)
			}
			if i, ok := merged[sess]; ok {
				t := &out[i]
				t.qos = max(t.qos, qos)
				t.retain = t.retain || retain
				if sub.id != 0 {
					t.subIDs = append(t.subIDs, sub.id)
				}
				continue
			}
			merged[sess] = len(out)
		}
		t := target{sub: sub, qos: qos, retain: retain}
		if sub.id != 0 {
			t.subIDs = []uint32{sub.id}
		}
		out = append(out, t)
	}
	return out
}

// deliver gives m to sess: QoS 0 goes straight to its connection (or
// nowhere when offline); QoS 1/2 is queued, stored for a persistent
// session, and sent as the send window allows. It returns the store batch
// holding the queued copy (0 if none). pc, if not nil, encodes m once for
// every session of the fan-out.
func (s *Server) deliver(sess *session, m *msg, qos byte, retain bool, subIDs []uint32, sendGate uint64, now time.Time, pc *pubCache) uint64 {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.gone {
		return 0
	}
	c := sess.conn
	if qos == 0 {
		if c == nil {
			return 0 // QoS 0 is not queued for offline sessions
		}
		b, err := pc.encode(m, sess.version, 0, 0, retain, false, subIDs, now.Unix())
		if err != nil || (c.maxOut > 0 && uint32(len(b)) > c.maxOut) {
			s.metrics.dropped.Add(1) // too large for this client [MQTT-3.1.2-25]
			return 0
		}
		if !c.sendQoS0(b, sendGate) {
			s.metrics.dropped.Add(1)
			s.limits.Hit(limitMaxQueued, "message dropped: client's queue is full",
				"client", sess.id, "key", "limits.max_queued_messages", "value", s.cfg.Limits.MaxQueuedMessages)
			return 0
		}
		s.metrics.messagesOut.Add(1)
		c.kick()
		return 0
	}
	if sess.count >= int(s.cfg.Limits.MaxInflight) {
		s.metrics.inflightDropped.Add(1)
		s.limits.Hit(limitMaxInflight, "QoS 1/2 message dropped: session queue is full",
			"client", sess.id, "key", "limits.max_inflight", "value", s.cfg.Limits.MaxInflight)
		return 0
	}
	e := outEntry{m: m, seq: sess.nextSeq, qos: qos, gate: sendGate}
	if retain {
		e.flags |= efRetain
	}
	sess.nextSeq++
	sendNow := c != nil && sess.unsent == len(sess.queue) && sess.inflight < s.window(c)
	if sendNow && !sess.assignPID(&e) {
		sendNow = false // every packet id is on the wire: it waits its turn
	}
	var gate uint64
	if sess.persistent {
		rec := &store.OutEntry{Seq: e.seq, PacketID: e.pid, QoS: qos, State: store.OutQueued, Retain: retain, SubIDs: subIDs}
		if sendNow {
			rec.State = store.OutSent // about to be sent: no second write needed for it
			e.flags |= efSentStored
		}
		gate = s.store.Write(func(w *store.Writer) {
			rec.MsgID = w.Ref(&m.ref, m.record)
			w.CreateOut(sess.id, rec)
		})
		if qos == 2 {
			e.gate = max(e.gate, gate) // its first PUBLISH waits until the broker can resume it
		}
	}
	sess.push(e, subIDs)
	s.metrics.queued.Add(1)
	if m.expiry != 0 {
		s.clock.expireQueued(sess, m)
	}
	if c != nil {
		s.sendQueued(sess, c, now, pc)
	}
	return gate
}

// expireQueued drops the queued messages of sess that expired before they
// could be sent (those on the wire wait for their acknowledgement).
func (s *Server) expireQueued(sess *session, now int64) {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if sess.gone {
		return
	}
	sess.pending(func(e *outEntry) {
		if !e.has(efWire) && e.state != store.OutReleased && e.m.expired(now) {
			s.drop(sess, e)
		}
	})
}

// window is how many QoS 1/2 messages may be in flight to c.
func (s *Server) window(c *conn) int {
	if c.version == 5 {
		return int(min(c.recvMax, uint16(s.cfg.Limits.MaxInflight)))
	}
	return defaultSendWindow
}

// sendQueued sends queued entries while the send window has room. An
// entry gets its packet id when first sent; a QoS 2 entry of a persistent
// session has that id stored before its PUBLISH goes out, so that after a
// restart it is resent with the same id. The caller holds sess.mu; c is
// sess's connection; pc may be nil.
func (s *Server) sendQueued(sess *session, c *conn, now time.Time, pc *pubCache) {
	win := s.window(c)
	sent := false
	var sentRecs []*store.OutEntry
	for sess.inflight < win && sess.unsent < len(sess.queue) {
		e := &sess.queue[sess.unsent]
		if e.has(efDone) {
			sess.unsent++
			continue
		}
		if e.state == store.OutReleased {
			sess.unsent++
			c.send(ackPacket(packets.Pubrel, e.pid, c.version, 0), e.gate)
		} else {
			if e.m.expired(now.Unix()) || !s.mayRead(sess, e.m.topic) {
				// Expired while queued, or its owner may no longer read it
				// (checked again against the identity it is delivered to).
				sess.unsent++
				s.drop(sess, e)
				continue
			}
			if !sess.assignPID(e) {
				break // every packet id is on the wire: wait for an acknowledgement
			}
			sess.unsent++
			b, err := pc.encode(e.m, c.version, e.qos, e.pid, e.has(efRetain), e.state == store.OutSent, sess.entrySubIDs(e), now.Unix())
			if err != nil || (c.maxOut > 0 && uint32(len(b)) > c.maxOut) {
				s.metrics.dropped.Add(1)
				s.drop(sess, e)
				continue
			}
			if e.state == store.OutQueued {
				e.state = store.OutSent
				if sess.persistent && !e.has(efSentStored) {
					e.flags |= efSentStored
					rec := sess.record(e, e.m.ref.ID())
					if e.qos == 2 {
						// Its packet id must be stored before the client
						// can see it.
						e.gate = max(e.gate, s.store.Write(func(w *store.Writer) { w.PutOut(sess.id, rec) }))
					} else {
						// DUP must be set on a resend after a restart: note
						// that it went out (losing this write only costs the
						// DUP flag and a new packet id).
						sentRecs = append(sentRecs, rec)
					}
				}
			}
			c.send(b, e.gate)
			s.metrics.messagesOut.Add(1)
		}
		e.flags |= efWire
		sess.inflight++
		sent = true
	}
	if len(sentRecs) > 0 {
		s.store.Write(func(w *store.Writer) {
			for _, rec := range sentRecs {
				w.PutOut(sess.id, rec)
			}
		})
	}
	s.throttle.account(sess)
	if sent {
		c.kick()
	}
}

// drop removes a queued entry that is done with: acknowledged, or never to
// be delivered (expired, too large, refused). The caller holds sess.mu.
func (s *Server) drop(sess *session, e *outEntry) {
	if sess.persistent {
		seq, ref := e.seq, &e.m.ref
		s.store.Write(func(w *store.Writer) {
			w.DeleteOut(sess.id, seq)
			w.Unref(ref)
		})
	}
	sess.complete(e)
	s.metrics.queued.Add(-1)
	s.throttle.account(sess)
}

// resend restarts delivery on a new connection: every entry not completed
// goes out again in order (PUBREL for released QoS 2 entries, PUBLISH with
// DUP and the same packet id for those sent before, without DUP for those
// never sent). The caller holds sess.mu.
func (s *Server) resend(sess *session, c *conn) {
	sess.unwire()
	sess.unsent = sess.head
	s.sendQueued(sess, c, time.Now(), nil)
}

// handleAck handles PUBACK, PUBREC, PUBREL and PUBCOMP from the client.
func (c *conn) handleAck(typ byte, pid uint16, reason byte) error {
	s := c.s
	sess := c.sess
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if typ != packets.Pubrel {
		s.throttle.progress(sess, time.Now().UnixNano())
	}
	switch typ {
	case packets.Pubrel: // inbound QoS 2, step 3
		if _, ok := sess.in2[pid]; !ok {
			code := byte(0)
			if c.version == 5 {
				code = packets.ErrPacketIdentifierNotFound.Code
			}
			c.sendAck(ackPacket(packets.Pubcomp, pid, c.version, code), 0)
			return nil
		}
		delete(sess.in2, pid)
		var gate uint64
		if sess.persistent {
			gate = s.store.Write(func(w *store.Writer) { w.DeleteInbound2(sess.id, pid) })
		}
		c.sendAck(ackPacket(packets.Pubcomp, pid, c.version, 0), gate)
		return nil
	}
	e := sess.byPacketID(pid)
	if e == nil {
		if typ == packets.Pubrec { // complete the client's flow so it can reuse the id
			code := byte(0)
			if c.version == 5 {
				code = packets.ErrPacketIdentifierNotFound.Code
			}
			c.send(ackPacket(packets.Pubrel, pid, c.version, code), 0)
		}
		return nil
	}
	switch {
	case typ == packets.Puback && e.qos == 1,
		typ == packets.Pubcomp && e.qos == 2 && e.state == store.OutReleased,
		typ == packets.Pubrec && e.qos == 2 && reason >= 0x80:
		s.drop(sess, e) // done: acknowledged, or refused by the client
		s.sendQueued(sess, c, time.Now(), nil)
	case typ == packets.Pubrec && e.qos == 2:
		var gate uint64
		if e.state != store.OutReleased {
			e.state = store.OutReleased
			if sess.persistent {
				rec := sess.record(e, e.m.ref.ID())
				gate = s.store.Write(func(w *store.Writer) { w.PutOut(sess.id, rec) })
			}
		}
		e.gate = gate
		c.send(ackPacket(packets.Pubrel, pid, c.version, 0), gate) // only after PUBREL state is stored
	}
	return nil
}

// retain makes m the retained message of its topic (an empty payload
// removes it), in memory and, unless the topic is volatile, in the store.
// It returns the store batch to wait for.
func (s *Server) retain(m *msg) uint64 {
	var keep *msg
	if m.plen > 0 {
		keep = m
	}
	var gate uint64
	s.retained.update(m.topic, keep, func(old *msg) {
		if s.store == nil || topic.Volatile(m.topic) || (old == nil && keep == nil) {
			return
		}
		gate = s.store.Write(func(w *store.Writer) {
			if old != nil {
				w.Unref(&old.ref)
			}
			if keep != nil {
				w.PutRetained(m.topic, w.Ref(&keep.ref, keep.record))
			} else {
				w.DeleteRetained(m.topic)
			}
		})
	})
	if keep != nil && keep.expiry != 0 {
		s.clock.expireRetained(keep)
	}
	s.metrics.retained.Store(int64(s.retained.count()))
	return gate
}

package broker

import (
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// handleSubscribe decides each filter on its own, answers SUBACK (after the
// new subscriptions of a persistent session are stored) and then sends the
// retained messages the new subscriptions match.
func (c *conn) handleSubscribe(fh packets.FixedHeader, body []byte) error {
	s := c.s
	pk := getPacket()
	defer putPacket(pk)
	pk.FixedHeader = fh
	pk.ProtocolVersion = c.version
	if err := safeDecode(pk.SubscribeDecode, body); err != nil {
		return err
	}
	if code := pk.SubscribeValidate(); code != packets.CodeSuccess {
		return code
	}
	sess := c.sess
	codes := make([]byte, len(pk.Filters))
	var fresh []*subscription
	var gate uint64
	for _, f := range pk.Filters {
		if f.NoLocal && strings.HasPrefix(f.Filter, topic.SharePrefix) {
			return packets.ErrProtocolViolationInvalidSharedNoLocal // [MQTT-3.8.3-4]
		}
	}
	for i, f := range pk.Filters {
		code, sub, isNew := c.subscribeOne(f)
		codes[i] = code
		if sub == nil {
			continue
		}
		if sess.persistent {
			rec := sub.record()
			gate = max(gate, s.store.Write(func(w *store.Writer) { w.PutSubscription(sess.id, rec) }))
		}
		if sub.group == "" && (sub.rh == 0 || (sub.rh == 1 && isNew)) {
			fresh = append(fresh, sub) // shared subscriptions get no retained messages
		}
	}
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Suback}, ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes}
	b, err := encode(ack.SubackEncode)
	if err != nil {
		return err
	}
	c.sendAck(b, gate)
	for _, sub := range fresh {
		s.sendRetained(sess, sub)
	}
	return nil
}

// subscribeOne adds one filter; it returns the SUBACK code and, when
// granted, the subscription and whether it is new (not a replacement).
func (c *conn) subscribeOne(f packets.Subscription) (byte, *subscription, bool) {
	s := c.s
	deny := func(v5 packets.Code) (byte, *subscription, bool) {
		if c.version == 5 {
			return v5.Code, nil, false
		}
		return 0x80, nil, false
	}
	filter := strings.Clone(f.Filter)
	if topic.ValidFilter(filter) != nil {
		return deny(packets.ErrTopicFilterInvalid)
	}
	group, inner, shared := topic.SplitShared(filter)
	if !shared {
		inner = filter
	}
	if topic.Hidden(inner) || strings.HasPrefix(inner, topic.Sockmq) {
		return deny(packets.ErrNotAuthorized)
	}
	partial := false
	if s.auth != nil {
		switch s.auth.Subscription(c.identity, inner) {
		case auth.SubDeny:
			s.log.Debug("subscription refused", "client", c.clientID, "user", c.identity.Username, "filter", filter)
			return deny(packets.ErrNotAuthorized)
		case auth.SubPartial:
			partial = true
		}
	}
	if !c.subRate.Take(1, time.Now()) {
		s.limits.Hit(limitSubscribeRate, "subscription refused: limits.subscribe_rate exceeded",
			"client", c.clientID, "key", "limits.subscribe_rate", "value", s.cfg.Limits.SubscribeRate, "burst", s.cfg.Limits.SubscribeBurst)
		return deny(packets.ErrQuotaExceeded)
	}
	sess := c.sess
	sess.mu.Lock()
	old := sess.subs[filter]
	if old == nil && len(sess.subs) >= s.cfg.Limits.MaxSubscriptions {
		sess.mu.Unlock()
		s.limits.Hit(limitMaxSubscriptions, "subscription refused: limits.max_subscriptions reached",
			"client", c.clientID, "key", "limits.max_subscriptions", "value", s.cfg.Limits.MaxSubscriptions)
		return deny(packets.ErrQuotaExceeded)
	}
	if old == nil && s.cfg.Limits.MaxSubscriptionsTotal > 0 && s.metrics.subscriptions.Load() >= s.cfg.Limits.MaxSubscriptionsTotal {
		sess.mu.Unlock()
		s.limits.Hit(limitMaxSubscriptionsTotal, "subscription refused: limits.max_subscriptions_total reached",
			"client", c.clientID, "key", "limits.max_subscriptions_total", "value", s.cfg.Limits.MaxSubscriptionsTotal)
		return deny(packets.ErrQuotaExceeded)
	}
	sub := &subscription{sess: sess, filter: filter, inner: inner, group: group, qos: min(f.Qos, 2),
		noLocal: f.NoLocal, rap: f.RetainAsPublished, rh: f.RetainHandling, id: uint32(f.Identifier)}
	sub.partial.Store(partial)
	if sess.subs == nil {
		sess.subs = make(map[string]*subscription)
	}
	sess.subs[filter] = sub
	sess.nsubs.Store(int32(len(sess.subs)))
	sess.mu.Unlock()
	if old != nil && s.subs.remove(old) {
		s.metrics.subscriptions.Add(-1)
	}
	s.subs.add(sub)
	s.metrics.subscriptions.Add(1)
	return sub.qos, sub, old == nil
}

// sendRetained delivers the retained messages matching a new
// subscription, with RETAIN set, each checked against the subscriber's
// read permission.
func (s *Server) sendRetained(sess *session, sub *subscription) {
	s.syncRetained()
	var found []*msg
	now := time.Now()
	s.retained.match(sub.inner, s.readScope(identity(sess.owner, sess.id)), func(m *msg, check bool) bool {
		if !m.expired(now.Unix()) && !topic.Hidden(m.topic) && (!check || s.mayRead(sess, m.topic)) {
			found = append(found, m)
		}
		return true
	})
	var ids []uint32
	if sub.id != 0 {
		ids = []uint32{sub.id}
	}
	for _, m := range found {
		s.deliver(sess, m, min(m.qos, sub.qos), true, ids, 0, now, nil)
	}
}

// handleUnsubscribe removes filters and answers UNSUBACK once a
// persistent session's removals are stored.
func (c *conn) handleUnsubscribe(fh packets.FixedHeader, body []byte) error {
	s := c.s
	pk := getPacket()
	defer putPacket(pk)
	pk.FixedHeader = fh
	pk.ProtocolVersion = c.version
	if err := safeDecode(pk.UnsubscribeDecode, body); err != nil {
		return err
	}
	if len(pk.Filters) == 0 {
		return packets.ErrProtocolViolationNoFilters
	}
	sess := c.sess
	codes := make([]byte, len(pk.Filters))
	var gate uint64
	for i, f := range pk.Filters {
		sess.mu.Lock()
		old := sess.subs[f.Filter]
		if old != nil {
			delete(sess.subs, f.Filter)
			sess.nsubs.Store(int32(len(sess.subs)))
		}
		persistent := sess.persistent
		sess.mu.Unlock()
		if old == nil {
			codes[i] = packets.CodeNoSubscriptionExisted.Code
			continue
		}
		if s.subs.remove(old) {
			s.metrics.subscriptions.Add(-1)
		}
		if persistent {
			filter := old.filter
			gate = max(gate, s.store.Write(func(w *store.Writer) { w.DeleteSubscription(sess.id, filter) }))
		}
	}
	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Unsuback}, ProtocolVersion: c.version, PacketID: pk.PacketID, ReasonCodes: codes}
	b, err := encode(ack.UnsubackEncode)
	if err != nil {
		return err
	}
	c.sendAck(b, gate)
	return nil
}

package broker

import (
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/limit"
)

// Names of the limits a SUBSCRIBE can hit, as counted in
// sockmq_limit_refusals_total{limit}.
const (
	limitMaxSubscriptions      = "max_subscriptions"
	limitMaxSubscriptionsTotal = "max_subscriptions_total"
	limitSubscribeRate         = "subscribe_rate"
)

// clientSubs is the SUBSCRIBE state sockmq keeps per MQTT connection. It is
// only used on the connection's own goroutine, which reads its packets and
// writes its SUBACKs.
type clientSubs struct {
	rate limit.Bucket
	// batch is the SUBSCRIBE being processed, from OnSubscribe until its
	// SUBACK is written.
	batch *subscribeBatch
}

// subscribeBatch remembers, per filter of a SUBSCRIBE, what sockmq needs
// after mochi has processed it.
type subscribeBatch struct {
	subs    []packets.Subscription // as the client sent them
	existed []bool                 // the client held the filter already
	quota   []bool                 // refused by a limit: SUBACK 0x97
}

// subState holds clientSubs per connection.
type subState struct{ m sync.Map } // *mqtt.Client -> *clientSubs

func (st *subState) get(cl *mqtt.Client) *clientSubs {
	if v, ok := st.m.Load(cl); ok {
		return v.(*clientSubs)
	}
	return nil
}

func (st *subState) forget(cl *mqtt.Client) { st.m.Delete(cl) }

// overQuotaFilter replaces filters refused by a limit: it is valid, lies in
// the reserved namespace, and is refused by OnACLCheck, so mochi answers
// exactly those filters with a failure code (3.1.1: 0x80); OnPacketEncode
// turns it into 0x97 "quota exceeded" for MQTT 5.
const overQuotaFilter = sockmqNamespace + "subscription-limit"

// OnSubscribe enforces limits.max_subscriptions (per client),
// limits.max_subscriptions_total and limits.subscribe_rate on each filter,
// and turns mochi's own retained replay off: sockmq replays retained
// messages itself once the SUBACK is written (replayRetained), walking only
// what the client may read.
func (h *policyHook) OnSubscribe(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	if cl.Net.Inline {
		return pk
	}
	s := h.s
	lim := s.cfg.Limits
	cs := s.subs.get(cl)
	if cs == nil {
		cs = &clientSubs{rate: limit.NewBucket(lim.SubscribeRate, lim.SubscribeBurst)}
		s.subs.m.Store(cl, cs)
	}
	b := &subscribeBatch{
		subs:    make([]packets.Subscription, len(pk.Filters)),
		existed: make([]bool, len(pk.Filters)),
		quota:   make([]bool, len(pk.Filters)),
	}
	n := cl.State.Subscriptions.Len()
	total := atomic.LoadInt64(&s.mq.Info.Subscriptions)
	now := time.Now()
	for i := range pk.Filters {
		f := &pk.Filters[i]
		b.subs[i] = *f
		_, exists := cl.State.Subscriptions.Get(f.Filter)
		b.existed[i] = exists
		refused := ""
		switch {
		case !exists && n >= lim.MaxSubscriptions:
			refused = limitMaxSubscriptions
			s.limits.Hit(refused, "subscription refused: limits.max_subscriptions reached",
				"client", cl.ID, "user", usernameOf(cl), "filter", f.Filter, "max_subscriptions", lim.MaxSubscriptions)
		case !exists && lim.MaxSubscriptionsTotal > 0 && total >= lim.MaxSubscriptionsTotal:
			refused = limitMaxSubscriptionsTotal
			s.limits.Hit(refused, "subscription refused: limits.max_subscriptions_total reached",
				"client", cl.ID, "user", usernameOf(cl), "filter", f.Filter, "max_subscriptions_total", lim.MaxSubscriptionsTotal)
		case !cs.rate.Take(1, now):
			refused = limitSubscribeRate
			s.limits.Hit(refused, "subscription refused: limits.subscribe_rate exceeded",
				"client", cl.ID, "user", usernameOf(cl), "filter", f.Filter, "subscribe_rate", lim.SubscribeRate, "subscribe_burst", lim.SubscribeBurst)
		}
		if refused != "" {
			b.quota[i] = true
			f.Filter = overQuotaFilter
			continue
		}
		if !exists {
			n++
			total++
		}
		// Retain handling 2 makes mochi skip its replay, which copies every
		// retained message the filter matches before checking any. The
		// option only matters at SUBSCRIBE time, so the value kept with
		// the subscription does not change anything later.
		f.RetainHandling = 2
	}
	cs.batch = b
	return pk
}

// markQuotaRefusals gives the filters refused by a limit the MQTT 5 reason
// code 0x97 "quota exceeded" in the SUBACK (mochi wrote 0x87; MQTT 3.1.1
// has only 0x80, which mochi already sends).
func (s *Server) markQuotaRefusals(cl *mqtt.Client, pk *packets.Packet) {
	cs := s.subs.get(cl)
	if cs == nil || cs.batch == nil || cl.Properties.ProtocolVersion < 5 || len(cs.batch.quota) != len(pk.ReasonCodes) {
		return
	}
	codes := append([]byte(nil), pk.ReasonCodes...) // mochi still reads its own slice
	for i, q := range cs.batch.quota {
		if q {
			codes[i] = packets.ErrQuotaExceeded.Code
		}
	}
	pk.ReasonCodes = codes
}

// subscribed runs once the SUBACK of cl's SUBSCRIBE is written: it replays
// the retained messages of every granted filter.
func (s *Server) subscribed(cl *mqtt.Client, ack packets.Packet) {
	cs := s.subs.get(cl)
	if cs == nil || cs.batch == nil {
		return
	}
	b := cs.batch
	cs.batch = nil
	if len(b.subs) != len(ack.ReasonCodes) {
		return
	}
	for i, code := range ack.ReasonCodes {
		if code < packets.ErrUnspecifiedError.Code && !b.quota[i] {
			s.replayRetained(cl, b.subs[i], b.existed[i])
		}
	}
}

package bridge

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/scproto"
)

// A broker subscription outlives its last member by idleLinger, so that a
// socket that unsubscribes and subscribes again (or many sockets coming and
// going on one channel) does not make the broker subscribe each time: a
// broker subscribe walks every retained message matching the filter. At
// most maxIdleFilters idle subscriptions are kept; beyond that the oldest
// ends at once.
const (
	idleLinger     = time.Second
	maxIdleFilters = 1024
)

// hub keeps one broker subscription per distinct MQTT filter, shared by
// every socket subscribed to it (reference counted by its member set).
//
// Locking: hub.mu guards the filter map and the idle set and is held while
// subscribing to or unsubscribing from the broker, so a filter is never
// subscribed twice. Each filterSub has its own RWMutex over its members:
// delivery (on the publisher's goroutine) takes only the read lock and
// never hub.mu.
type hub struct {
	h       *Handler
	mu      sync.Mutex
	filters map[string]*filterSub
	idle    map[*filterSub]time.Time // filters without members, since when
	sweep   *time.Timer              // ends idle filters; nil when idle is empty
	closed  bool
}

// filterSub is the broker subscription for one filter and its members.
type filterSub struct {
	hub      *hub
	filter   string
	channel  string
	wildcard bool
	cancel   func()

	mu      sync.RWMutex
	members map[*socket]*member
}

// member is one socket's subscription to a channel.
type member struct {
	s       *socket
	f       *filterSub
	channel string
	// check makes every delivery run Authorizer.Allowed for the socket
	// (SubPartial, or while the socket's identity is changing).
	check atomic.Bool
}

func newHub(h *Handler) *hub {
	return &hub{h: h, filters: make(map[string]*filterSub), idle: make(map[*filterSub]time.Time)}
}

// add subscribes s to channel (MQTT filter filter), subscribing to the
// broker unless the filter has members or lingers idle.
func (hb *hub) add(s *socket, channel, filter string, check bool) (*member, error) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	f := hb.filters[filter]
	delete(hb.idle, f)
	if f == nil {
		f = &filterSub{hub: hb, filter: filter, channel: channel, wildcard: isWildcard(channel), members: make(map[*socket]*member)}
		cancel, err := hb.h.broker.Subscribe(filter, f.deliver)
		if err != nil {
			return nil, err
		}
		f.cancel = cancel
		hb.filters[filter] = f
		hb.h.metrics.filters.Inc()
	}
	m := &member{s: s, f: f, channel: channel}
	m.check.Store(check)
	f.mu.Lock()
	f.members[s] = m
	f.mu.Unlock()
	return m, nil
}

// remove ends m; the broker subscription ends idleLinger after its last
// member left (at once after close).
func (hb *hub) remove(m *member) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	f := m.f
	f.mu.Lock()
	if f.members[m.s] == m {
		delete(f.members, m.s)
	}
	empty := len(f.members) == 0
	f.mu.Unlock()
	if !empty || hb.filters[f.filter] != f {
		return
	}
	if hb.closed {
		hb.endLocked(f)
		return
	}
	if len(hb.idle) >= maxIdleFilters {
		var oldest *filterSub
		var since time.Time
		for g, t := range hb.idle {
			if oldest == nil || t.Before(since) {
				oldest, since = g, t
			}
		}
		hb.endLocked(oldest)
	}
	hb.idle[f] = time.Now()
	if hb.sweep == nil {
		hb.sweep = time.AfterFunc(idleLinger, hb.sweepIdle)
	}
}

// endLocked ends f's broker subscription. The caller holds hb.mu.
func (hb *hub) endLocked(f *filterSub) {
	delete(hb.idle, f)
	delete(hb.filters, f.filter)
	f.cancel()
	hb.h.metrics.filters.Dec()
}

// sweepIdle ends the broker subscriptions idle for idleLinger, and runs
// again for the others.
func (hb *hub) sweepIdle() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.sweep = nil
	if hb.closed {
		return
	}
	now := time.Now()
	var next time.Duration
	for f, since := range hb.idle {
		if left := idleLinger - now.Sub(since); left > 0 {
			if next == 0 || left < next {
				next = left
			}
			continue
		}
		hb.endLocked(f)
	}
	if len(hb.idle) > 0 {
		hb.sweep = time.AfterFunc(next, hb.sweepIdle)
	}
}

// close ends the idle broker subscriptions; later removals end theirs at
// once.
func (hb *hub) close() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.closed = true
	if hb.sweep != nil {
		hb.sweep.Stop()
		hb.sweep = nil
	}
	for f := range hb.idle {
		hb.endLocked(f)
	}
}

// size returns the number of broker subscriptions (for tests and metrics).
func (hb *hub) size() int {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	return len(hb.filters)
}

// deliver runs on the publisher's goroutine: it serialises the message once
// and enqueues the same bytes to every member that may read it. It never
// blocks on a socket.
func (f *filterSub) deliver(m Message) {
	h := f.hub.h
	var frame []byte
	n := 0
	f.mu.RLock()
	for _, mb := range f.members {
		if mb.check.Load() && !h.authz.Allowed(*mb.s.identity.Load(), m.Topic, Read) {
			continue
		}
		if frame == nil {
			frame = h.publishFrame(f.channel, f.wildcard, &m)
		}
		if mb.s.enqueue(frame) {
			n++
		}
	}
	f.mu.RUnlock()
	if n > 0 {
		h.metrics.messagesOut.Add(float64(n))
	}
}

// publishFrame serialises the push of m to subscribers of channel. On an
// exact channel the data is the message itself. On a wildcard channel it
// is the envelope {"topic": <concrete channel>, "data": <message>}, so
// that an application reading the channel with the stock client (which
// hands it only the data) knows which topic each message came from.
func (h *Handler) publishFrame(channel string, wildcard bool, m *Message) []byte {
	topic := ""
	if wildcard {
		topic = h.channelOf(m.Topic)
	}
	buf := make([]byte, 0, 64+len(channel)+len(topic)+len(m.Payload)*4/3+32)
	buf = append(buf, `{"event":"#publish","data":{"channel":`...)
	buf = scproto.AppendString(buf, channel)
	buf = append(buf, `,"data":`...)
	if wildcard {
		buf = append(buf, `{"topic":`...)
		buf = scproto.AppendString(buf, topic)
		buf = append(buf, `,"data":`...)
		buf = toSC(buf, m)
		buf = append(buf, '}')
	} else {
		buf = toSC(buf, m)
	}
	return append(buf, `}}`...)
}

package broker

import (
	"container/heap"
	"fmt"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// expirer expires retained messages and queued (inflight) messages.
//
// mochi does this by copying every retained message, and copying and
// sorting every session's queue, once a second whether or not anything can
// expire: an idle broker holding 100k retained messages spent 28% of a core
// on it (BENCHMARKS.md). The expirer instead keeps a heap of the messages
// that have an expiry at all (an MQTT 5 message expiry, or
// limits.max_message_expiry) and, once a second, looks only at those that
// are due. With neither, it holds nothing and costs nothing.
//
// Entries only point at a place (a retained topic, or a client id and
// packet id); when an entry is due, the message currently at that place is
// re-evaluated, so a place that now holds another message is handled
// correctly (it is expired, rescheduled or left alone).
type expirer struct {
	maxExpiry int64 // limits.max_message_expiry in seconds; 0 = none
	mu        sync.Mutex
	h         expiryHeap
}

type expiryEntry struct {
	at       int64  // unix seconds when due
	topic    string // retained topic, or "" for an inflight message
	clientID string
	packetID uint16
}

type expiryHeap []expiryEntry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryEntry)) }
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// expiryOf returns when pk expires (unix seconds), or 0 for never. mochi
// folds limits.max_message_expiry into Expiry when a message is published;
// messages restored from the store have no Expiry (mochi does not store
// it) and get it from their creation time and expiry property. A negative
// Expiry is mochi's "send as soon as quota allows" mark, not a time.
func (x *expirer) expiryOf(pk packets.Packet) int64 {
	if pk.Expiry > 0 {
		return pk.Expiry
	}
	d := int64(pk.Properties.MessageExpiryInterval)
	if x.maxExpiry > 0 && (d == 0 || x.maxExpiry < d) {
		d = x.maxExpiry
	}
	if d == 0 {
		return 0
	}
	return pk.Created + d
}

func (x *expirer) add(e expiryEntry) {
	if e.at == 0 {
		return
	}
	x.mu.Lock()
	heap.Push(&x.h, e)
	x.mu.Unlock()
}

// trackRetained schedules a retained message's expiry.
func (x *expirer) trackRetained(pk packets.Packet) {
	x.add(expiryEntry{at: x.expiryOf(pk), topic: pk.TopicName})
}

// trackInflight schedules a queued message's expiry.
func (x *expirer) trackInflight(clientID string, pk packets.Packet) {
	x.add(expiryEntry{at: x.expiryOf(pk), clientID: clientID, packetID: pk.PacketID})
}

// due removes and returns the entries due at now.
func (x *expirer) due(now int64) []expiryEntry {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []expiryEntry
	for len(x.h) > 0 && x.h[0].at <= now {
		out = append(out, heap.Pop(&x.h).(expiryEntry))
	}
	return out
}

// pending is the number of scheduled entries (for tests).
func (x *expirer) pending() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.h)
}

// runExpiry expires due messages once a second until done is closed.
func (s *Server) runExpiry(done <-chan struct{}) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			s.expireDue(now.Unix())
		}
	}
}

func (s *Server) expireDue(now int64) {
	for _, e := range s.expiry.due(now) {
		if e.topic != "" {
			s.expireRetained(e, now)
		} else {
			s.expireInflight(e, now)
		}
	}
}

// expired reports whether the message now at entry e's place has expired;
// if it expires later (the place holds a newer message), e is rescheduled.
func (x *expirer) expired(e expiryEntry, pk packets.Packet, now int64) bool {
	at := x.expiryOf(pk)
	if at > now {
		e.at = at
		x.add(e)
	}
	return at != 0 && at <= now
}

func (s *Server) expireRetained(e expiryEntry, now int64) {
	pk, ok := s.mq.Topics.Retained.Get(e.topic)
	if ok && s.expiry.expired(e, pk, now) {
		s.mq.Topics.Retained.Delete(e.topic)
		s.retainedChanged(e.topic)
		atomic.StoreInt64(&s.mq.Info.Retained, int64(s.mq.Topics.Retained.Len()))
		if s.store != nil {
			s.store.OnRetainedExpired(e.topic)
		}
	}
}

func (s *Server) expireInflight(e expiryEntry, now int64) {
	cl, ok := s.mq.Clients.Get(e.clientID)
	if !ok {
		return
	}
	pk, ok := cl.State.Inflight.Get(e.packetID)
	if ok && s.expiry.expired(e, pk, now) {
		if cl.State.Inflight.Delete(e.packetID) {
			atomic.AddInt64(&s.mq.Info.Inflight, -1)
			if s.store != nil {
				s.store.OnQosDropped(cl, pk)
			}
		}
	}
}

// seedExpiry schedules what was restored from the store (mochi restores it
// without any hook).
func (s *Server) seedExpiry() {
	for _, pk := range s.mq.Topics.Retained.GetAll() {
		s.expiry.trackRetained(pk)
	}
	for id, cl := range s.mq.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		for _, pk := range cl.State.Inflight.GetAll(false) {
			s.expiry.trackInflight(id, pk)
		}
	}
}

// stopMochiExpiryScans stops mochi's once-a-second retained and inflight
// expiry scans, which the expirer replaces. mochi offers no option for it,
// so this reaches its unexported tickers (mochi is pinned in go.mod, and
// TestMochiExpiryScansStopped fails if a new version moves them).
func stopMochiExpiryScans(mq *mqtt.Server) error {
	lv := reflect.ValueOf(mq).Elem().FieldByName("loop")
	if !lv.IsValid() || lv.Kind() != reflect.Pointer {
		return fmt.Errorf("mochi Server.loop not found")
	}
	loop := reflect.NewAt(lv.Type(), unsafe.Pointer(lv.UnsafeAddr())).Elem()
	if loop.IsNil() {
		return fmt.Errorf("mochi Server.loop is nil")
	}
	for _, name := range []string{"retainedExpiry", "inflightExpiry"} {
		f := loop.Elem().FieldByName(name)
		if !f.IsValid() || f.Type() != reflect.TypeOf((*time.Ticker)(nil)) {
			return fmt.Errorf("mochi loop.%s not found", name)
		}
		t := reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*time.Ticker)
		t.Stop()
	}
	return nil
}

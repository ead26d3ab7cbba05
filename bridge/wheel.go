package bridge

import (
	"sync"
	"time"
)

// wheel is the handler's one timer for every socket: a hashed timing wheel
// that sends each socket its pings every bridge.ping_interval and closes
// sockets that miss bridge.handshake_timeout or stay silent for
// bridge.ping_timeout. A socket sits in exactly one slot, the one of its
// next due time; inbound traffic only stores a timestamp, so a busy socket
// costs the wheel nothing more than an idle one.
//
// Locking: mu guards the slots and every socket's wPrev, wNext, wSlot and
// wDead. Due sockets are taken out of their slot under mu and handled
// without it (on the wheel goroutine), then put back.
type wheel struct {
	h     *Handler
	tick  time.Duration
	mu    sync.Mutex
	slots []*socket // heads of intrusive lists
	cur   int64     // the next tick to process (absolute tick number)
	epoch time.Time
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// wheelTick returns the wheel's resolution for cfg: a sixteenth of the
// shortest of its intervals, between 5 ms and 250 ms.
func wheelTick(cfg Config) time.Duration {
	d := min(cfg.PingInterval, cfg.PingTimeout, cfg.HandshakeTimeout) / 16
	return min(max(d, 5*time.Millisecond), 250*time.Millisecond)
}

func newWheel(h *Handler) *wheel {
	tick := wheelTick(h.cfg)
	span := max(h.cfg.PingInterval, h.cfg.PingTimeout, h.cfg.HandshakeTimeout)
	w := &wheel{
		h: h, tick: tick, slots: make([]*socket, int(span/tick)+4),
		epoch: time.Now(), stop: make(chan struct{}), done: make(chan struct{}),
	}
	go w.run()
	return w
}

// tickOf returns the tick number at which t is due (rounded up).
func (w *wheel) tickOf(t time.Time) int64 {
	d := t.Sub(w.epoch)
	return int64((d + w.tick - 1) / w.tick)
}

// schedule puts s in the slot of due (moving it if it is in another).
func (w *wheel) schedule(s *socket, due time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if s.wDead {
		return
	}
	w.unlinkLocked(s)
	t := max(w.tickOf(due), w.cur)
	if limit := w.cur + int64(len(w.slots)) - 1; t > limit {
		t = limit // cannot happen: no interval is longer than the wheel
	}
	i := int32(t % int64(len(w.slots)))
	s.wSlot, s.wPrev, s.wNext = i, nil, w.slots[i]
	if s.wNext != nil {
		s.wNext.wPrev = s
	}
	w.slots[i] = s
}

// remove takes s out of the wheel for good.
func (w *wheel) remove(s *socket) {
	w.mu.Lock()
	s.wDead = true
	w.unlinkLocked(s)
	w.mu.Unlock()
}

func (w *wheel) unlinkLocked(s *socket) {
	if s.wSlot < 0 {
		return
	}
	if s.wPrev != nil {
		s.wPrev.wNext = s.wNext
	} else {
		w.slots[s.wSlot] = s.wNext
	}
	if s.wNext != nil {
		s.wNext.wPrev = s.wPrev
	}
	s.wPrev, s.wNext, s.wSlot = nil, nil, -1
}

func (w *wheel) run() {
	defer close(w.done)
	t := time.NewTicker(w.tick)
	defer t.Stop()
	var due []*socket
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			now = time.Now()
			last := w.tickOf(now)
			for {
				w.mu.Lock()
				if w.cur > last {
					w.mu.Unlock()
					break
				}
				i := w.cur % int64(len(w.slots))
				w.cur++
				for s := w.slots[i]; s != nil; {
					next := s.wNext
					s.wPrev, s.wNext, s.wSlot = nil, nil, -1
					due = append(due, s)
					s = next
				}
				w.slots[i] = nil
				w.mu.Unlock()
				for _, s := range due {
					if next, ok := s.due(now); ok {
						w.schedule(s, next)
					}
				}
				clear(due)
				due = due[:0]
			}
		}
	}
}

// close stops the wheel goroutine. Safe to call more than once.
func (w *wheel) close() {
	w.once.Do(func() { close(w.stop) })
	<-w.done
}

// due runs when the socket's wheel slot comes up: it closes a socket that
// missed its handshake or pong timeout, queues the ping when its time has
// come, and returns when the socket is due next (ok false: leave the
// wheel).
func (s *socket) due(now time.Time) (next time.Time, ok bool) {
	s.qmu.Lock()
	closing := s.closeReq != nil
	s.qmu.Unlock()
	if closing {
		return time.Time{}, false // the close grace timer ends it
	}
	cfg := &s.h.cfg
	if !s.hsDone.Load() {
		deadline := s.connectedAt.Add(cfg.HandshakeTimeout)
		if now.Before(deadline) {
			return deadline, true
		}
		s.close(CloseHandshakeTimeout, "Did not receive #handshake from client before timeout", false)
		s.h.metrics.handshakesRefused.WithLabelValues("timeout").Inc()
		s.h.log.Debug("socket closed: no handshake", "client", s.id, "remote", s.remote)
		return time.Time{}, false
	}
	deadline := time.Unix(0, s.lastActive.Load()).Add(cfg.PingTimeout)
	if !now.Before(deadline) {
		s.close(ClosePongTimeout, "Client pong timed out", false)
		s.h.log.Debug("socket closed: pong timeout", "client", s.id, "remote", s.remote)
		return time.Time{}, false
	}
	if s.nextPing.IsZero() || !now.Before(s.nextPing) {
		// The first ping goes one interval after the handshake (which
		// scheduled the socket then), the next ones every interval.
		s.queuePing()
		if s.nextPing.IsZero() {
			s.nextPing = now
		}
		s.nextPing = s.nextPing.Add(cfg.PingInterval)
		if !s.nextPing.After(now) {
			s.nextPing = now.Add(cfg.PingInterval)
		}
	}
	if s.nextPing.Before(deadline) {
		return s.nextPing, true
	}
	return deadline, true
}

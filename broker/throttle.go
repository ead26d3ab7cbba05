package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// The publisher throttle (limits.throttle_queued): when the QoS 1/2
// messages waiting for connected subscribers beyond their send windows,
// all sessions together, reach the limit, the broker as a whole is not
// keeping up, and it stops reading the sockets of clients that publish
// (TCP then slows them down) until that backlog is below half the limit.
// Latency then stays bounded by the backlog instead of every session
// queueing up to limits.max_inflight.
//
// What it is not: one slow subscriber holds at most limits.max_inflight
// messages and is dropped beyond that (sockmq_inflight_dropped_total), so
// it cannot reach a limit above that on its own. A subscriber that
// acknowledges nothing for stallAfter while the throttle is engaged is
// stalled, not slow: its backlog stops counting (until it acknowledges
// again), so a few stuck clients cannot stop every publisher. A client
// whose own session holds a backlog is never paused (reading it is how
// that backlog drains). In-process publishers (Server.Publish, the
// bridge) are not throttled.

// defaultThrottleQueued is limits.throttle_queued's default: eight
// sessions full at the default limits.max_inflight.
const defaultThrottleQueued = 65536

// defaultStallAfter is how long a session with a backlog may go without
// acknowledging anything before it stops counting towards the throttle.
const defaultStallAfter = 2 * time.Second

// throttle tracks the backlog and the paused publishers. Lock order: a
// session's mu, then throttle.mu (a leaf); a connection's wmu is never
// held together with throttle.mu.
type throttle struct {
	s         *Server
	high, low int64 // engage at high, release at low; high 0 = off
	// stallAfter (nanoseconds) is defaultStallAfter; tests shorten it.
	stallAfter atomic.Int64

	backlog atomic.Int64 // sum of the counted sessions' contributions
	on      atomic.Bool

	mu       sync.Mutex
	paused   []*conn               // polled publishers not being read
	released chan struct{}         // closed when the throttle releases (goroutine readers wait on it)
	contrib  map[*session]struct{} // sessions with a non-zero contribution

	engaged atomic.Uint64 // times engaged (sockmq_throttle_engaged_total)
	pauses  atomic.Uint64 // publisher read pauses (sockmq_throttle_pauses_total)
	stalls  atomic.Uint64 // sessions stalled (sockmq_throttle_stalled_sessions_total)
}

func newThrottle(s *Server, limit int64) *throttle {
	t := &throttle{s: s, released: make(chan struct{}), contrib: make(map[*session]struct{})}
	t.stallAfter.Store(int64(defaultStallAfter))
	if limit > 0 {
		t.high, t.low = limit, limit/2
	}
	return t
}

// account brings sess's contribution up to date: the entries it holds
// that are not on the wire, while it is connected and not stalled. The
// caller holds sess.mu; call it after anything that changes the queue,
// the send window or the connection.
func (t *throttle) account(sess *session) {
	if t.high == 0 {
		return
	}
	n := 0
	if sess.conn != nil && !sess.gone && !sess.stalled {
		n = sess.count - sess.inflight
	}
	d := n - int(sess.backlog)
	if d == 0 {
		return
	}
	if sess.backlog == 0 || n == 0 {
		t.mu.Lock()
		if n == 0 {
			delete(t.contrib, sess)
		} else {
			t.contrib[sess] = struct{}{}
		}
		t.mu.Unlock()
	}
	sess.backlog = int32(n)
	v := t.backlog.Add(int64(d))
	switch {
	case d > 0 && v >= t.high && !t.on.Load():
		t.engage()
	case d < 0 && v <= t.low && t.on.Load():
		t.release()
	}
}

// progress notes that sess's client acknowledged something (the caller
// holds sess.mu): a stalled session counts again.
func (t *throttle) progress(sess *session, now int64) {
	sess.lastAck = now
	if sess.stalled {
		sess.stalled = false
		t.account(sess)
	}
}

func (t *throttle) engage() {
	t.mu.Lock()
	if t.on.Load() || t.backlog.Load() < t.high {
		t.mu.Unlock()
		return
	}
	t.on.Store(true)
	t.mu.Unlock()
	t.engaged.Add(1)
	t.s.limits.Hit(limitThrottle, "publishers throttled: the messages waiting for subscribers reached the limit; reading resumes below half of it",
		"key", "limits.throttle_queued", "value", t.high, "backlog", t.backlog.Load())
	t.s.clock.add(timer{at: time.Now().UnixNano() + t.stallAfter.Load()/2, kind: tThrottle})
}

// release ends throttling: paused publishers are read again (on another
// goroutine: the caller may hold a session's lock).
func (t *throttle) release() {
	t.mu.Lock()
	if !t.on.Load() || t.backlog.Load() > t.low {
		t.mu.Unlock()
		return
	}
	t.on.Store(false)
	paused := t.paused
	t.paused = nil
	close(t.released)
	t.released = make(chan struct{})
	t.mu.Unlock()
	if len(paused) > 0 {
		go resumeAll(paused)
	}
}

// resumeAll re-arms paused connections. Whoever clears c.throttled (this,
// or closeNet for a connection closing meanwhile) arms c, exactly once.
func resumeAll(paused []*conn) {
	now := time.Now().UnixNano()
	for _, c := range paused {
		if c.throttled.CompareAndSwap(true, false) {
			c.lastRead.Store(now) // its silence while paused was the broker's doing
			c.arm()
		}
	}
}

// pause reports whether c, a polled connection that has just published,
// is to stop being read; then it is noted and re-armed when the throttle
// releases. The caller is c's reader.
func (t *throttle) pause(c *conn) bool {
	if !t.on.Load() || !t.mayPause(c) {
		return false
	}
	t.mu.Lock()
	if !t.on.Load() {
		t.mu.Unlock()
		return false
	}
	c.throttled.Store(true)
	t.paused = append(t.paused, c)
	t.mu.Unlock()
	// A close that came before the flag was set did not arm c: then the
	// reader keeps the role and ends it.
	c.wmu.Lock()
	closed := c.closed
	c.wmu.Unlock()
	if (closed || c.state.Load() == stClosing) && c.throttled.CompareAndSwap(true, false) {
		t.forget(c)
		return false
	}
	t.pauses.Add(1)
	return true
}

// mayPause: a connection whose own session has a backlog is a consumer
// that must be read for the backlog to drain.
func (t *throttle) mayPause(c *conn) bool {
	sess := c.sess
	if sess == nil {
		return false
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return sess.backlog == 0
}

// wait blocks a goroutine-served publisher's reader while the throttle is
// engaged, or until c closes.
func (t *throttle) wait(c *conn) {
	if !t.on.Load() || !t.mayPause(c) {
		return
	}
	t.pauses.Add(1)
	c.throttled.Store(true)
	defer func() {
		c.lastRead.Store(time.Now().UnixNano())
		c.throttled.Store(false)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for t.on.Load() && c.state.Load() != stClosing {
		t.mu.Lock()
		ch := t.released
		on := t.on.Load()
		t.mu.Unlock()
		if !on {
			return
		}
		select {
		case <-ch:
			return
		case <-tick.C:
		case <-t.s.stopped:
			return
		}
	}
}

// sweep runs on the clock while the throttle is engaged: sessions that
// acknowledged nothing for stallAfter stop counting.
func (t *throttle) sweep(now int64) {
	if !t.on.Load() {
		return
	}
	t.mu.Lock()
	list := make([]*session, 0, len(t.contrib))
	for sess := range t.contrib {
		list = append(list, sess)
	}
	t.mu.Unlock()
	for _, sess := range list {
		sess.mu.Lock()
		if !sess.stalled && sess.backlog > 0 && now-sess.lastAck >= t.stallAfter.Load() {
			sess.stalled = true
			t.stalls.Add(1)
			t.account(sess)
		}
		sess.mu.Unlock()
	}
	if t.on.Load() {
		t.s.clock.add(timer{at: now + t.stallAfter.Load()/2, kind: tThrottle})
	}
}

// forget drops c from the paused list: it is closing, and its closer,
// having cleared c.throttled, arms it so that its reader ends it.
func (t *throttle) forget(c *conn) {
	t.mu.Lock()
	for i, p := range t.paused {
		if p == c {
			t.paused = append(t.paused[:i], t.paused[i+1:]...)
			break
		}
	}
	t.mu.Unlock()
}

package broker

import (
	"container/heap"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Kinds of timers the clock runs.
const (
	tConnect   = iota // a connection must have sent CONNECT by now
	tKeepalive        // check a connection's keepalive
	tWill             // a delayed will is due
	tExpiry           // a disconnected session expires
	tRetained         // a retained message expires
	tClose            // a connection's last packet had its chance: close it
	tQueued           // a session's queued messages may have expired
	tRefuse           // a delayed CONNACK refusal (failed login) is due
	tSys              // publish $SYS statistics
	tTrim             // check whether to return memory to the OS (memtrim.go)
	tThrottle         // look for stalled sessions while publishers are throttled (throttle.go)
)

type timer struct {
	at   int64 // unix nanoseconds
	kind uint8
	c    *conn
	sess *session
	gen  uint64
	m    *msg
	code packets.Code
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

// clock is the engine's single timer goroutine: connect timeouts,
// keepalive checks (no per-packet deadlines: the reader only records when
// it last read), delayed wills, session expiry and retained expiry. Timers
// are never cancelled; each re-checks its subject when it fires (session
// timers carry a generation that a reconnect advances).
type clock struct {
	s       *Server
	mu      sync.Mutex
	h       timerHeap
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
	once    sync.Once
	started atomic.Bool
}

func newClock(s *Server) *clock {
	return &clock{s: s, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

func (k *clock) add(t timer) {
	k.mu.Lock()
	first := len(k.h) == 0 || t.at < k.h[0].at
	heap.Push(&k.h, t)
	k.mu.Unlock()
	if first {
		select {
		case k.wake <- struct{}{}:
		default:
		}
	}
}

func (k *clock) watchConnect(c *conn) {
	if d := k.s.cfg.Limits.ConnectTimeout; d > 0 {
		k.add(timer{at: time.Now().Add(d).UnixNano(), kind: tConnect, c: c})
	}
}

func (k *clock) watchKeepalive(c *conn) {
	if c.keepalive > 0 {
		k.add(timer{at: c.lastRead.Load() + int64(c.keepalive*3/2), kind: tKeepalive, c: c})
	}
}

func (k *clock) scheduleWill(sess *session, gen uint64, at time.Time) {
	k.add(timer{at: at.UnixNano(), kind: tWill, sess: sess, gen: gen})
}

func (k *clock) scheduleExpiry(sess *session, gen uint64, at time.Time) {
	k.add(timer{at: at.UnixNano(), kind: tExpiry, sess: sess, gen: gen})
}

// closeLater closes c after d, in case its final packet cannot be written.
func (k *clock) closeLater(c *conn, d time.Duration) {
	k.add(timer{at: time.Now().Add(d).UnixNano(), kind: tClose, c: c})
}

// startSys publishes $SYS statistics now and every sysInterval.
func (k *clock) startSys(started time.Time) {
	k.add(timer{at: started.UnixNano(), kind: tSys, gen: uint64(started.UnixNano())})
}

// refuseLater sends c's refusal after d (a delayed failed login).
func (k *clock) refuseLater(c *conn, code packets.Code, d time.Duration) {
	k.add(timer{at: time.Now().Add(d).UnixNano(), kind: tRefuse, c: c, code: code})
}

// expireQueued looks at sess's queue when its message m expires.
func (k *clock) expireQueued(sess *session, m *msg) {
	k.add(timer{at: time.Unix(m.expiry, 0).UnixNano(), kind: tQueued, sess: sess})
}

func (k *clock) expireRetained(m *msg) {
	k.add(timer{at: time.Unix(m.expiry, 0).UnixNano(), kind: tRetained, m: m})
}

// start runs the clock's goroutine.
func (k *clock) start() {
	k.started.Store(true)
	go k.run()
}

func (k *clock) run() {
	defer close(k.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		k.mu.Lock()
		wait := time.Hour
		if len(k.h) > 0 {
			wait = time.Duration(k.h[0].at - time.Now().UnixNano())
		}
		k.mu.Unlock()
		if wait > 0 {
			t.Reset(wait)
			select {
			case <-k.stop:
				return
			case <-k.wake:
				if !t.Stop() {
					<-t.C
				}
				continue
			case <-t.C:
			}
		}
		now := time.Now().UnixNano()
		var due []timer
		k.mu.Lock()
		for len(k.h) > 0 && k.h[0].at <= now {
			due = append(due, heap.Pop(&k.h).(timer))
		}
		k.mu.Unlock()
		for _, tm := range due {
			k.fire(tm, now)
		}
	}
}

func (k *clock) fire(t timer, now int64) {
	s := k.s
	switch t.kind {
	case tConnect:
		if t.c.state.Load() == stNew {
			t.c.end(&endCause{err: errConnectTimeout, reason: ReasonWill})
		}
	case tKeepalive:
		c := t.c
		if c.state.Load() != stConnected {
			return
		}
		if c.throttled.Load() { // not read on purpose: its silence is not its fault
			k.add(timer{at: now + int64(c.keepalive*3/2), kind: tKeepalive, c: c})
			return
		}
		due := c.lastRead.Load() + int64(c.keepalive*3/2)
		if now < due {
			k.add(timer{at: due, kind: tKeepalive, c: c})
			return
		}
		c.disconnect(&endCause{err: errKeepalive, reason: ReasonTimeout, code: packets.ErrKeepAliveTimeout.Code})
	case tWill:
		s.willDue(t.sess, t.gen)
	case tExpiry:
		s.sessionExpired(t.sess, t.gen)
	case tRetained:
		s.retainedExpired(t.m)
	case tClose:
		t.c.closeNet()
	case tQueued:
		s.expireQueued(t.sess, now/int64(time.Second))
	case tRefuse:
		t.c.sendRefusal(t.code)
	case tSys:
		s.publishSys(time.Unix(0, int64(t.gen)))
		k.add(timer{at: now + int64(sysInterval), kind: tSys, gen: t.gen})
	case tTrim:
		s.trimTick(now)
	case tThrottle:
		s.throttle.sweep(now)
	}
}

// close stops the clock and waits for it. Safe to call more than once.
func (k *clock) close() {
	k.once.Do(func() { close(k.stop) })
	if k.started.Load() {
		<-k.done
	}
}

package broker

import (
	"sync"
	"sync/atomic"
	"time"
)

// subscription is one of a session's subscriptions (also the entry in the
// subscription index).
type subscription struct {
	sess         *session      // nil for an in-process subscription
	fn           func(Message) // in-process handler
	filter       string        // as subscribed (with $share/<group>/ for shared ones)
	inner        string        // the filter without the share prefix
	group        string        // share name; "" when not shared
	qos          byte
	noLocal, rap bool
	rh           byte
	id           uint32
	// partial: the ACL allows only some topics under the filter, so every
	// delivery is checked (re-decided on reload, hence atomic).
	partial atomic.Bool
}

// outEntry is a QoS 1/2 message queued for, or in flight to, a session.
type outEntry struct {
	m      *msg
	seq    uint64
	gate   uint64 // store batch holding the entry's record (QoS 2 sends wait for it)
	subIDs []uint32
	pid    uint16
	qos    byte
	state  byte // store.OutQueued, OutSent, OutReleased
	retain bool
	wire   bool // sent on the current connection (counts in the send window)
	// sentStored: the store record already says the entry was sent.
	sentStored bool
	done       bool // acknowledged or dropped; removed lazily from the queue
}

// session is MQTT session state. It outlives connections when its expiry
// is non-zero. All fields are guarded by mu unless noted.
type session struct {
	id    string
	owner string // the user name that owns the session; "" = anonymous

	online atomic.Bool // conn != nil, readable without mu

	mu         sync.Mutex
	conn       *conn // nil while offline
	version    byte
	expiry     uint32 // seconds; store.NeverExpires = never
	persistent bool   // stored (expiry > 0 and persistence on)
	subs       map[string]*subscription
	nsubs      atomic.Int32 // len(subs), readable without mu (fan-out dedup)

	queue    []*outEntry // delivery order; done entries are skipped
	head     int         // first entry that is not done
	unsent   int         // index of the first entry never sent on this connection
	inflight int         // entries sent and not completed (send window)
	byPID    map[uint16]*outEntry
	nextPID  uint16
	nextSeq  uint64
	count    int // entries not done

	in2 map[uint16]struct{} // inbound QoS 2 ids awaiting PUBREL

	will           *pendingWill
	disconnectedAt time.Time
	gone           bool // removed from the session table
	timerGen       uint64
}

// pendingWill is a session's will.
type pendingWill struct {
	m              *msg
	delay          uint32 // will delay, seconds
	expiryInterval uint32 // MQTT 5 message expiry of the will, seconds (0 = none), counted from publication
}

func (s *session) queued() int { return s.count }

// allocPID returns a packet id not used by any queued entry.
func (s *session) allocPID() (uint16, bool) {
	if s.count >= 65535 {
		return 0, false
	}
	for i := 0; i < 65536; i++ {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if _, used := s.byPID[s.nextPID]; !used {
			return s.nextPID, true
		}
	}
	return 0, false
}

// push appends e to the queue and indexes its packet id.
func (s *session) push(e *outEntry) {
	if s.byPID == nil {
		s.byPID = make(map[uint16]*outEntry)
	}
	s.byPID[e.pid] = e
	s.queue = append(s.queue, e)
	s.count++
}

// complete marks e done and drops it from the indexes.
func (s *session) complete(e *outEntry) {
	if e.done {
		return
	}
	e.done = true
	if s.byPID[e.pid] == e {
		delete(s.byPID, e.pid)
	}
	s.count--
	if e.wire {
		e.wire = false
		s.inflight--
	}
	s.compact()
}

// compact drops done entries from the front of the queue.
func (s *session) compact() {
	for s.head < len(s.queue) && s.queue[s.head].done {
		s.queue[s.head] = nil
		s.head++
	}
	if s.head > len(s.queue)/2 && s.head > 32 {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.unsent -= s.head
		s.head = 0
	} else if s.head == len(s.queue) {
		s.queue = s.queue[:0]
		s.unsent -= s.head
		s.head = 0
	}
	if s.unsent < s.head {
		s.unsent = s.head
	}
}

// sessionTable holds every session by client id.
type sessionTable struct {
	mu sync.Mutex
	m  map[string]*session
}

func (t *sessionTable) get(id string) *session {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

func (t *sessionTable) all() []*session {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*session, 0, len(t.m))
	for _, s := range t.m {
		out = append(out, s)
	}
	return out
}

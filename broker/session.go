package broker

import (
	"cmp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/store"
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
// Entries are held by value in the session's queue (32 bytes each); the
// message itself is shared by every session it was routed to.
type outEntry struct {
	m    *msg // nil once done
	seq  uint64
	gate uint64 // store batch to wait for before sending (QoS 2: the record with its packet id)
	// pid is allocated when the entry is first sent (0 until then), so
	// only entries on the wire hold packet ids.
	pid   uint16
	qos   byte
	state byte // store.OutQueued, OutSent, OutReleased
	flags entryFlags
}

// entryFlags are an outEntry's boolean states.
type entryFlags uint8

const (
	efRetain entryFlags = 1 << iota // RETAIN set on delivery
	// efWire: sent on the current connection (counts in the send window).
	efWire
	// efSentStored: the store record already says the entry was sent.
	efSentStored
	// efDone: acknowledged or dropped; removed from the queue lazily.
	efDone
	// efSubIDs: the session's subIDs map holds this entry's subscription
	// identifiers.
	efSubIDs
)

func (e *outEntry) has(f entryFlags) bool { return e.flags&f != 0 }

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

	// queue holds the entries in delivery order (ascending seq). Done
	// entries stay until push compacts the done prefix away; a pointer
	// into queue is valid only until the next push.
	queue    []outEntry
	head     int // first entry that may not be done
	unsent   int // index of the first entry never sent on this connection
	inflight int // entries sent and not completed (send window)
	count    int // entries not done
	// byPID maps the packet id of every entry sent at least once and not
	// done to its seq (made when first needed).
	byPID map[uint16]uint64
	// subIDs holds the subscription identifiers of the entries that have
	// any, by seq (made when first needed).
	subIDs  map[uint64][]uint32
	nextPID uint16
	nextSeq uint64

	in2 map[uint16]struct{} // inbound QoS 2 ids awaiting PUBREL

	// The publisher throttle's view (throttle.go): the entries counted
	// in its backlog, when the client last acknowledged anything (unix
	// nanoseconds), and whether it stopped counting for acknowledging
	// nothing for too long.
	backlog int32
	stalled bool
	lastAck int64

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

// assignPID gives e (an entry of s.queue about to be sent) a packet id not
// used by any other entry on the wire, unless it has one; false when all
// 65,535 are in use.
func (s *session) assignPID(e *outEntry) bool {
	if e.pid != 0 {
		return true
	}
	if len(s.byPID) >= 65535 {
		return false
	}
	if s.byPID == nil {
		s.byPID = make(map[uint16]uint64)
	}
	for {
		s.nextPID++
		if s.nextPID == 0 {
			s.nextPID = 1
		}
		if _, used := s.byPID[s.nextPID]; !used {
			e.pid = s.nextPID
			s.byPID[e.pid] = e.seq
			return true
		}
	}
}

// push appends e to the queue with its subscription identifiers. When the
// queue must grow, the done prefix is compacted away first (entries not
// done are never lost).
func (s *session) push(e outEntry, subIDs []uint32) {
	if s.head > 0 && len(s.queue) == cap(s.queue) {
		n := copy(s.queue, s.queue[s.head:])
		clear(s.queue[n:])
		s.queue = s.queue[:n]
		s.unsent = max(s.unsent-s.head, 0)
		s.head = 0
	}
	if len(subIDs) > 0 {
		if s.subIDs == nil {
			s.subIDs = make(map[uint64][]uint32)
		}
		s.subIDs[e.seq] = subIDs
		e.flags |= efSubIDs
	}
	if e.pid != 0 {
		if s.byPID == nil {
			s.byPID = make(map[uint16]uint64)
		}
		s.byPID[e.pid] = e.seq
	}
	s.queue = append(s.queue, e)
	s.count++
}

// emptied resets a queue whose entries are all done. Done entries hold no
// pointers, so a loop still walking the old array only sees done entries;
// a large array is let go.
func (s *session) emptied() {
	if cap(s.queue) > 256 {
		s.queue = nil
	} else {
		s.queue = s.queue[:0]
	}
	s.head, s.unsent, s.inflight = 0, 0, 0
	s.byPID, s.subIDs = nil, nil
}

// clearQueue forgets every entry (the session is dropped) and returns how
// many were not done.
func (s *session) clearQueue() int {
	n := s.count
	s.queue, s.byPID, s.subIDs = nil, nil, nil
	s.head, s.unsent, s.count, s.inflight = 0, 0, 0, 0
	return n
}

// find returns the index of the entry with seq, or -1.
func (s *session) find(seq uint64) int {
	if s.head < len(s.queue) && s.queue[s.head].seq == seq {
		return s.head // the oldest: acknowledgements mostly come in order
	}
	q := s.queue[s.head:]
	i, ok := slices.BinarySearchFunc(q, seq, func(e outEntry, seq uint64) int { return cmp.Compare(e.seq, seq) })
	if !ok {
		return -1
	}
	return s.head + i
}

// byPacketID returns the entry on the wire with packet id pid, or nil.
func (s *session) byPacketID(pid uint16) *outEntry {
	seq, ok := s.byPID[pid]
	if !ok {
		return nil
	}
	if i := s.find(seq); i >= 0 && !s.queue[i].has(efDone) {
		return &s.queue[i]
	}
	return nil
}

// entrySubIDs returns e's subscription identifiers.
func (s *session) entrySubIDs(e *outEntry) []uint32 {
	if !e.has(efSubIDs) {
		return nil
	}
	return s.subIDs[e.seq]
}

// complete marks e done and drops it from the indexes; its message is
// released. Entries do not move (only push compacts), so callers walking
// the queue may go on.
func (s *session) complete(e *outEntry) {
	if e.has(efDone) {
		return
	}
	if e.pid != 0 && s.byPID[e.pid] == e.seq {
		delete(s.byPID, e.pid)
	}
	if e.has(efSubIDs) {
		delete(s.subIDs, e.seq)
	}
	if e.has(efWire) {
		s.inflight--
	}
	e.flags = efDone
	e.m = nil
	s.count--
	for s.head < len(s.queue) && s.queue[s.head].has(efDone) {
		s.head++
	}
	if s.unsent < s.head {
		s.unsent = s.head
	}
	if s.count == 0 {
		s.emptied()
	}
}

// pending calls fn for every entry that is not done, in order. fn may
// complete entries but must not push.
func (s *session) pending(fn func(e *outEntry)) {
	q := s.queue
	for i := s.head; i < len(q); i++ {
		if !q[i].has(efDone) {
			fn(&q[i])
		}
	}
}

// unwire notes that no entry is on the wire any more (the connection
// ended, or a new one starts over).
func (s *session) unwire() {
	s.inflight = 0
	for i := s.head; i < len(s.queue); i++ {
		s.queue[i].flags &^= efWire
	}
}

// record is e's store record.
func (s *session) record(e *outEntry, bodyID uint64) *store.OutEntry {
	return &store.OutEntry{Seq: e.seq, PacketID: e.pid, QoS: e.qos, State: e.state, Retain: e.has(efRetain),
		SubIDs: s.entrySubIDs(e), MsgID: bodyID}
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

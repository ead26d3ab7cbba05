package lwt

import (
	"hash/fnv"
	"sync"
)

// Store keeps the wills of this process's sockets where the other
// processes of a cluster find them (the cluster's will store), so that a
// will is still sent, once, when this process dies. The Registry owns the
// order of the calls for one socket: they never overlap.
type Store interface {
	// Put records (or replaces) the will of socket o on channel. An error
	// fails the setWill: the will would not survive this process.
	Put(o Owner, channel string, w Will) error
	// Delete removes the record of the will of socket o on channel (the
	// will was cleared or its socket closed cleanly).
	Delete(o Owner, channel string)
	// Claim removes the record before this process sends the will. False
	// means the will must not be sent here (another process sent it while
	// this one was considered dead).
	Claim(o Owner, channel string) bool
}

// storeStripes serialise the store calls of one socket (setWill, clearWill
// and its end may race on different goroutines) without one lock for all.
type storeStripes [64]sync.Mutex

func (s *storeStripes) of(sessionID string) *sync.Mutex {
	h := fnv.New32a()
	_, _ = h.Write([]byte(sessionID))
	return &s[h.Sum32()%uint32(len(s))]
}

// SetStore makes r record every will in s (cluster mode). Call it before
// the first socket opens; nil keeps wills in memory only.
func (r *Registry) SetStore(s Store) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.store = s
}

// forget removes cancelled or cleared wills from the store.
func (r *Registry) forget(st Store, es []entry) {
	if st == nil {
		return
	}
	for _, e := range es {
		st.Delete(e.owner, e.channel)
	}
}

// claim reports whether this process may send e (always without a store).
func (r *Registry) claim(st Store, e entry) bool {
	if st == nil {
		return true
	}
	if !st.Claim(e.owner, e.channel) {
		r.log.Info("will not sent: another node sent it while this one was considered dead", "session", e.owner.SessionID, "topic", e.will.Topic)
		return false
	}
	return true
}

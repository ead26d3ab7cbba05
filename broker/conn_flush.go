package broker

import (
	"sync"
	"sync/atomic"
)

// flusher coalesces the writes of polled connections per read batch:
// while any poller handles a batch, a connection with new output (the
// publisher's acknowledgements, every subscriber a publish reached) is
// noted instead of written, and the batch's end writes each noted
// connection once, with one writev for everything it got. Outside batches
// (an in-process publish, a store commit) writes happen at once.
type flusher struct {
	active  atomic.Int32 // batches in progress
	mu      sync.Mutex
	pending []*conn
	spare   []*conn
	// In-process subscribers' flushes (DeferFlush), after the conns.
	ext      []BatchFlusher
	extSpare []BatchFlusher
}

// BatchFlusher is an in-process subscriber's output that waits for the
// end of the read batches in progress (see Server.DeferFlush).
type BatchFlusher interface {
	// FlushBatch writes what was held back. It runs on the goroutine
	// that ends the last batch (a poller goroutine) and must not block.
	FlushBatch()
}

// DeferFlush lets an in-process subscriber (the SocketCluster bridge)
// coalesce its writes per read batch as the broker does for MQTT
// subscribers: while a poller handles a batch of publishes, f is noted
// and its FlushBatch runs once when the batches in progress end. It
// returns false when no batch is in progress: the caller writes at once.
// The caller notes f at most once until FlushBatch runs.
func (s *Server) DeferFlush(f BatchFlusher) bool { return s.flush.laterExt(f) }

// BeginBatch starts a batch of publishes by an in-process publisher (the
// SocketCluster bridge handling the frames of one socket read): until the
// matching EndBatch, writes to subscribers are held, and each is written
// once at the end with everything the batch brought it, as for a read
// batch of an MQTT connection. Batches may nest and overlap; every
// BeginBatch must be followed by exactly one EndBatch.
func (s *Server) BeginBatch() { s.flush.begin() }

// EndBatch ends a batch started by BeginBatch and writes what it held
// (without blocking on any subscriber) on the calling goroutine.
func (s *Server) EndBatch() { s.flush.end() }

// begin marks the start of a read batch.
func (f *flusher) begin() { f.active.Add(1) }

// end marks the end of a read batch and writes what is pending.
func (f *flusher) end() {
	f.active.Add(-1)
	f.drain()
}

// later notes c (whose writing flag the caller set) for the end of the
// current batches; false when no batch is in progress (write now).
func (f *flusher) later(c *conn) bool {
	if f.active.Load() == 0 {
		return false
	}
	f.mu.Lock()
	f.pending = append(f.pending, c)
	f.mu.Unlock()
	// A batch that ended between the check and the append may have
	// drained before c was noted: then nobody else will write it.
	if f.active.Load() == 0 {
		f.drain()
	}
	return true
}

// laterExt is later for an in-process subscriber's flush.
func (f *flusher) laterExt(b BatchFlusher) bool {
	if f.active.Load() == 0 {
		return false
	}
	f.mu.Lock()
	f.ext = append(f.ext, b)
	f.mu.Unlock()
	if f.active.Load() == 0 {
		f.drain()
	}
	return true
}

// drain writes every noted connection, then runs the noted flushes.
func (f *flusher) drain() {
	for {
		f.mu.Lock()
		p := f.pending
		if len(p) == 0 {
			e := f.ext
			if len(e) == 0 {
				f.mu.Unlock()
				return
			}
			f.ext, f.extSpare = f.extSpare[:0], nil
			f.mu.Unlock()
			for i, b := range e {
				b.FlushBatch()
				e[i] = nil
			}
			f.mu.Lock()
			if f.extSpare == nil && cap(e) <= 4096 {
				f.extSpare = e[:0]
			}
			f.mu.Unlock()
			continue
		}
		f.pending, f.spare = f.spare[:0], nil
		f.mu.Unlock()
		for i, c := range p {
			c.writeInline()
			p[i] = nil
		}
		f.mu.Lock()
		if f.spare == nil && cap(p) <= 4096 {
			f.spare = p[:0]
		}
		f.mu.Unlock()
	}
}

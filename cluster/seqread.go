package cluster

import "sync"

// seqReader coalesces concurrent reads of the retained bucket's last
// sequence: each caller needs a read that started after it was called
// (read-your-writes), so callers arriving while a read is under way join
// the next one, which then serves all of them. A burst of SUBSCRIBEs
// (clients reconnecting after a node restart) thus costs a few JetStream
// API requests, not one each.
type seqReader struct {
	mu      sync.Mutex
	next    *seqRound // the round that starts after the current one
	running bool
	fetch   func() (uint64, error)
}

type seqRound struct {
	done chan struct{}
	seq  uint64
	err  error
}

// read returns the result of a fetch that started after read was called.
func (r *seqReader) read() (uint64, error) {
	r.mu.Lock()
	if r.next == nil {
		r.next = &seqRound{done: make(chan struct{})}
	}
	round := r.next
	if !r.running {
		r.running = true
		go r.loop()
	}
	r.mu.Unlock()
	<-round.done
	return round.seq, round.err
}

func (r *seqReader) loop() {
	for {
		r.mu.Lock()
		round := r.next
		r.next = nil
		if round == nil {
			r.running = false
			r.mu.Unlock()
			return
		}
		r.mu.Unlock()
		round.seq, round.err = r.fetch()
		close(round.done)
	}
}

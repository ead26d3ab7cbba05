package main

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ackTimeout is how long a publish may wait for its acknowledgement.
const ackTimeout = 10 * time.Second

// errAckTimeout is a publish that was not acknowledged within ackTimeout.
var errAckTimeout = errors.New("publish not acknowledged in time")

// ackTimer measures, for one publisher, the time from sending each QoS 1/2
// PUBLISH to its acknowledgement (PUBACK for QoS 1, PUBCOMP for QoS 2) and
// keeps at most size publishes unacknowledged. One goroutine waits for the
// acknowledgements in sending order (a broker acknowledges one connection's
// publishes in order), so each is timed when it arrives, not when the
// publisher next looks.
type ackTimer[T any] struct {
	slots chan struct{} // one token per unacknowledged publish
	queue chan sent[T]
	wait  func(x T, timeout time.Duration) error
	done  chan struct{}
	once  sync.Once

	failed   atomic.Int64 // failed acknowledgements not yet reported by take
	mu       sync.Mutex
	hist     histogram
	firstErr error
}

type sent[T any] struct {
	at time.Time
	x  T
}

// newAckTimer starts the waiting goroutine; close ends it once every
// publish added before is acknowledged or has failed.
func newAckTimer[T any](size int, wait func(T, time.Duration) error) *ackTimer[T] {
	a := &ackTimer[T]{
		slots: make(chan struct{}, size),
		queue: make(chan sent[T], size),
		wait:  wait,
		done:  make(chan struct{}),
	}
	go a.run()
	return a
}

// reserve blocks while size publishes are unacknowledged. It cannot block
// for ever: each of them is acknowledged, fails or times out.
func (a *ackTimer[T]) reserve() { a.slots <- struct{}{} }

// add records a publish sent at at; reserve must have been called for it.
func (a *ackTimer[T]) add(at time.Time, x T) { a.queue <- sent[T]{at: at, x: x} }

// take returns one failed acknowledgement not reported yet, if any.
func (a *ackTimer[T]) take() error {
	for {
		n := a.failed.Load()
		if n == 0 {
			return nil
		}
		if a.failed.CompareAndSwap(n, n-1) {
			a.mu.Lock()
			defer a.mu.Unlock()
			return a.firstErr
		}
	}
}

func (a *ackTimer[T]) run() {
	defer close(a.done)
	for s := range a.queue {
		err := a.wait(s.x, max(time.Until(s.at.Add(ackTimeout)), time.Millisecond))
		took := time.Since(s.at)
		a.mu.Lock()
		if err == nil {
			a.hist.record(int64(took))
		} else if a.firstErr == nil {
			a.firstErr = err
		}
		a.mu.Unlock()
		if err != nil {
			a.failed.Add(1)
		}
		<-a.slots
	}
}

// close waits, within timeout, until every publish added is acknowledged
// or has failed, and returns the first failure. No add may follow; more
// calls are harmless.
func (a *ackTimer[T]) close(timeout time.Duration) error {
	a.once.Do(func() { close(a.queue) })
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-a.done:
	case <-t.C:
		return errAckTimeout
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.firstErr
}

// mergeInto adds the acknowledgement times measured so far to h.
func (a *ackTimer[T]) mergeInto(h *histogram) {
	a.mu.Lock()
	h.merge(&a.hist)
	a.mu.Unlock()
}

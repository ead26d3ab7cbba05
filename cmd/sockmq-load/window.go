package main

import "time"

// window keeps at most a fixed number of unconfirmed publishes, oldest
// first, whatever "confirmed" means for the transport (an MQTT token, an
// SC invoke's reply).
type window[T any] struct {
	ring        []T
	head, count int
	wait        func(x T, timeout time.Duration) error
}

func newWindow[T any](size int, wait func(T, time.Duration) error) *window[T] {
	return &window[T]{ring: make([]T, size), wait: wait}
}

// full reports whether the next push must first wait for the oldest.
func (w *window[T]) full() bool { return w.count == len(w.ring) }

func (w *window[T]) push(x T) {
	w.ring[(w.head+w.count)%len(w.ring)] = x
	w.count++
}

// waitOldest waits for the oldest publish to be confirmed and drops it.
func (w *window[T]) waitOldest(timeout time.Duration) error {
	var zero T
	x := w.ring[w.head]
	w.ring[w.head] = zero
	w.head = (w.head + 1) % len(w.ring)
	w.count--
	return w.wait(x, timeout)
}

// flush waits for every publish, within timeout overall, and returns the
// first error.
func (w *window[T]) flush(timeout time.Duration) error {
	var first error
	deadline := time.Now().Add(timeout)
	for w.count > 0 {
		if err := w.waitOldest(max(time.Until(deadline), time.Millisecond)); err != nil && first == nil {
			first = err
		}
	}
	return first
}

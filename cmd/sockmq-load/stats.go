package main

import (
	"math/bits"
	"time"
)

// histogram records durations in nanoseconds with a relative error below
// 1% (log-linear buckets, 64 per power of two). The zero value is ready.
type histogram struct {
	counts [hBuckets]uint64
	n      uint64
	sum    float64
	max    int64
}

const (
	hSub     = 64                          // buckets per power of two
	hBuckets = 2*hSub + (64-8)*hSub + hSub // enough for any int64
)

func hIndex(v int64) int {
	if v < 0 {
		v = 0
	}
	if v < 2*hSub {
		return int(v)
	}
	shift := bits.Len64(uint64(v)) - 7 // v>>shift is in [64, 127]
	return 2*hSub + (shift-1)*hSub + int(v>>shift) - hSub
}

// hValue is the middle of bucket i.
func hValue(i int) int64 {
	if i < 2*hSub {
		return int64(i)
	}
	i -= 2 * hSub
	shift := i/hSub + 1
	m := int64(i%hSub + hSub)
	return m<<shift + (int64(1)<<shift)/2
}

func (h *histogram) record(v int64) {
	h.counts[hIndex(v)]++
	h.n++
	h.sum += float64(v)
	if v > h.max {
		h.max = v
	}
}

func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// quantile returns the q-quantile (0 < q <= 1).
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	target := uint64(q*float64(h.n) + 0.5)
	if target < 1 {
		target = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= target {
			return time.Duration(min(hValue(i), h.max))
		}
	}
	return time.Duration(h.max)
}

func (h *histogram) mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// tracker is one subscriber's record of what it received. It is used by
// that subscriber's receive goroutine only.
type tracker struct {
	seen     [][]uint64 // per publisher, a bit per sequence number
	unique   uint64
	dups     uint64
	bad      uint64 // payloads that were not ours
	hist     histogram
	lastRecv int64 // unix ns of the last message
}

func newTracker(pubs int) *tracker { return &tracker{seen: make([][]uint64, pubs)} }

// record notes a message and reports whether it was new.
func (t *tracker) record(pub, seq int, latency, now int64) bool {
	if pub < 0 || pub >= len(t.seen) || seq < 0 {
		t.bad++
		return false
	}
	w, bit := seq/64, uint64(1)<<(seq%64)
	s := t.seen[pub]
	if w >= len(s) {
		grown := make([]uint64, max(w+1, 2*len(s)))
		copy(grown, s)
		s = grown
		t.seen[pub] = s
	}
	t.lastRecv = now
	if s[w]&bit != 0 {
		t.dups++
		return false
	}
	s[w] |= bit
	t.unique++
	t.hist.record(latency)
	return true
}

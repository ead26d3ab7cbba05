package broker

import (
	"runtime"
	rtmetrics "runtime/metrics"
	"time"
)

// Memory trimming: Go returns freed heap to the operating system slowly
// (the background scavenger keeps about 10% over the heap goal, and a heap
// that grew during a burst keeps its goal until the next collections), and
// pages of the store's memory map stay resident after a transaction read
// them. A broker that took a burst of retained or queued messages (or of
// connections) and then went quiet would so keep tens of MiB it no longer
// uses. Once a second, on the engine's clock, the trimmer looks at how much
// was allocated: after at least trimAfter bytes since the last trim (or a
// quarter of the live heap, if more: a collection costs in proportion to
// the live heap, so a large broker is not collected every 16 MiB) and
// trimQuietSamples consecutive seconds with less than trimQuietRate bytes
// allocated, it starts a trim on a goroutine of its own.
//
// A trim must not stall the clients it shares the CPU with, which rules
// out debug.FreeOSMemory: its release of every free page runs without
// preemption, and with one core (GOMAXPROCS 1) that held every connection
// for 50-100 ms after a burst of 15,000 connections (measured). Lowering the
// memory limit to make the runtime release pages is no better: the
// collector then paces itself against a goal just above the live heap and
// makes the delivering goroutines assist it (200 ms measured). A trim runs
// two ordinary, concurrent collections instead (runtime.GC; the first frees
// the burst's garbage, the second records the heap in use without it), after
// which the runtime's own background scavenger sees that the process holds
// more than 10% over the heap in use and returns the rest in small,
// preemptible steps over the next seconds. Last it drops the store's mapped
// pages (store.ReleaseMemory). A busy broker is never trimmed: the garbage
// collector paces it, and releasing pages it is about to use again would
// only cost page faults.
const (
	trimInterval     = time.Second
	trimAfter        = 16 << 20 // bytes allocated since the last trim
	trimQuietRate    = 1 << 20  // bytes per trimInterval below which the broker is quiet
	trimQuietSamples = 2
)

// memTrimmer decides when to trim. It is used only by the clock's
// goroutine.
type memTrimmer struct {
	sample  []rtmetrics.Sample // allocated bytes (cumulative), live heap bytes
	trimmed uint64             // bytes allocated (cumulative) at the last trim
	prev    uint64             // bytes allocated at the previous sample
	quiet   int                // consecutive quiet samples
}

// read returns the bytes allocated on the heap since the process started
// (cumulative) and the live heap at the last collection; no
// stop-the-world, unlike runtime.ReadMemStats.
func (t *memTrimmer) read() (total, live uint64) {
	if t.sample == nil {
		t.sample = []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/live:bytes"}}
	}
	rtmetrics.Read(t.sample)
	if t.sample[0].Value.Kind() == rtmetrics.KindUint64 {
		total = t.sample[0].Value.Uint64()
	}
	if t.sample[1].Value.Kind() == rtmetrics.KindUint64 {
		live = t.sample[1].Value.Uint64()
	}
	return total, live
}

// due records a sample (cumulative allocated bytes, live heap bytes) and
// reports whether to trim now.
func (t *memTrimmer) due(total, live uint64) bool {
	rate := total - t.prev
	t.prev = total
	if total-t.trimmed < max(trimAfter, live/4) {
		t.quiet = 0
		return false
	}
	if rate >= trimQuietRate {
		t.quiet = 0
		return false
	}
	t.quiet++
	return t.quiet >= trimQuietSamples
}

// done notes a trim that ended with total bytes allocated.
func (t *memTrimmer) done(total uint64) {
	t.trimmed, t.prev, t.quiet = total, total, 0
}

// startTrim schedules the first trim check.
func (k *clock) startTrim() {
	k.add(timer{at: time.Now().Add(trimInterval).UnixNano(), kind: tTrim})
}

// trimTick is the once-a-second check (on the clock's goroutine); it
// schedules the next one. A trim runs on its own goroutine, one at a time.
func (s *Server) trimTick(now int64) {
	t := &s.trim
	total, live := t.read()
	if s.trimming.Load() {
		t.done(total) // what the trim itself allocates is not a burst
	} else if t.due(total, live) {
		t.done(total)
		s.trimming.Store(true)
		s.trimWG.Add(1)
		go s.trimMemory()
	}
	s.clock.add(timer{at: now + int64(trimInterval), kind: tTrim})
}

// trimMemory collects twice (see the comment at the top) and drops the
// store's resident map pages. It runs on its own goroutine.
func (s *Server) trimMemory() {
	defer s.trimWG.Done()
	defer s.trimming.Store(false)
	start := time.Now()
	runtime.GC()
	runtime.GC()
	gcTook := time.Since(start)
	var released int64
	if s.store != nil {
		var err error
		if released, err = s.store.ReleaseMemory(); err != nil {
			s.log.Warn("memory trim: store pages not released", "error", err)
		}
	}
	s.metrics.memTrims.Add(1)
	s.log.Debug("memory trimmed", "took", time.Since(start), "gc", gcTook, "store_map_bytes", released)
}

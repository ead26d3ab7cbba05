package broker

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkStoredMessageMemory reports what a stored message costs the
// heap, with persistence on (sync off, to keep the run short):
//
//   - retained: 20,000 retained 64-byte messages, each on its own topic
//     (as `sockmq-load state --retained`);
//   - queued: 100 offline persistent sessions subscribed to one topic, then
//     1,000 QoS 1 messages of 64 bytes published to it, so 100,000 queued
//     copies of 1,000 messages (as `sockmq-load state --sessions 100
//     --queued 1000`).
//
// heap-B/msg is the growth of the live heap (HeapAlloc after two GCs) per
// stored message (per queued copy in the queued case); inuse-B/msg the
// growth of the heap's in-use spans, which the process's RSS follows more
// closely. With SOCKMQ_HEAP_PROFILE_DIR set, a heap profile of the filled
// state is written there (stored-retained.pprof, stored-queued.pprof). RSS
// of the real process: see BENCHMARKS.md ("Stored state").
func BenchmarkStoredMessageMemory(b *testing.B) {
	if os.Getenv("SOCKMQ_HEAP_PROFILE_DIR") != "" {
		// Record every allocation, so that the profile accounts for each
		// stored message's bytes (the default samples one per 512 KiB).
		old := runtime.MemProfileRate
		runtime.MemProfileRate = 1
		defer func() { runtime.MemProfileRate = old }()
	}
	b.Run("retained", func(b *testing.B) {
		const n = 20000
		s := benchBroker(b, nil, func(c *Config) { c.Persistence.Sync = false })
		payload := make([]byte, 64)
		var live, inuse float64
		round := 0
		b.ReportAllocs()
		for b.Loop() {
			prefix := "bench/retained/" + strconv.Itoa(round) + "/"
			round++
			before := memSnapshotLive()
			publishAll(b, s, n, func(i int) Message {
				return Message{Topic: prefix + strconv.Itoa(i), Payload: bytes.Clone(payload), Retain: true}
			})
			after := memSnapshotLive()
			live = float64(after.alloc-before.alloc) / n
			inuse = float64(after.inuse-before.inuse) / n
			heapProfile(b, "retained")
			// Remove them again (an empty retained message deletes).
			publishAll(b, s, n, func(i int) Message { return Message{Topic: prefix + strconv.Itoa(i), Retain: true} })
		}
		b.ReportMetric(live, "heap-B/msg")
		b.ReportMetric(inuse, "inuse-B/msg")
	})
	b.Run("queued", func(b *testing.B) {
		const sessions, msgs = 100, 1000
		s := benchBroker(b, nil, func(c *Config) { c.Persistence.Sync = false })
		payload := make([]byte, 64)
		var live, inuse float64
		round := 0
		b.ReportAllocs()
		for b.Loop() {
			topic := "bench/queued/" + strconv.Itoa(round)
			ids := make([]string, sessions)
			for i := range ids {
				ids[i] = "q" + strconv.Itoa(round) + "-" + strconv.Itoa(i)
				rc, code, err := dialMQTT(s.MQTTAddr(), ids[i], "", "", false)
				if err != nil || code != 0 {
					b.Fatalf("connect: %v %d", err, code)
				}
				if err := rc.subscribe(topic, 1); err != nil {
					b.Fatal(err)
				}
				rc.disconnect()
			}
			for _, id := range ids {
				for s.Connected(id) {
					time.Sleep(time.Millisecond)
				}
			}
			round++
			s.store.Sync()
			before := memSnapshotLive()
			queued := s.metrics.queued.Load()
			publishAll(b, s, msgs, func(int) Message {
				return Message{Topic: strings.Clone(topic), Payload: bytes.Clone(payload), QoS: 1}
			})
			after := memSnapshotLive()
			if got := s.metrics.queued.Load() - queued; got != sessions*msgs {
				b.Fatalf("%d copies queued, want %d", got, sessions*msgs)
			}
			live = float64(after.alloc-before.alloc) / (sessions * msgs)
			inuse = float64(after.inuse-before.inuse) / (sessions * msgs)
			heapProfile(b, "queued")
			// Discard the sessions with their queues.
			for _, id := range ids {
				rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", true)
				if err != nil || code != 0 {
					b.Fatalf("connect: %v %d", err, code)
				}
				rc.disconnect()
			}
			for s.SessionCount() > 0 {
				time.Sleep(time.Millisecond)
			}
			s.store.Sync()
		}
		b.ReportMetric(live, "heap-B/msg")
		b.ReportMetric(inuse, "inuse-B/msg")
	})
}

// publishAll publishes n messages made by mk (in-process) and waits until
// all are stored. mk gives each message its own topic and payload, as a
// message read from a connection has: the broker may keep or copy them.
func publishAll(b *testing.B, s *Server, n int, mk func(int) Message) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	wg.Add(n)
	for i := range n {
		s.PublishAsync(mk(i), func(err error) {
			if err != nil {
				mu.Lock()
				first = err
				mu.Unlock()
			}
			wg.Done()
		})
	}
	wg.Wait()
	s.store.Sync()
	if first != nil {
		b.Fatal(first)
	}
}

type liveMem struct{ alloc, inuse int64 }

func memSnapshotLive() liveMem {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return liveMem{alloc: int64(m.HeapAlloc), inuse: int64(m.HeapInuse)}
}

// heapProfile writes a heap profile to $SOCKMQ_HEAP_PROFILE_DIR/stored-<name>.pprof.
func heapProfile(b *testing.B, name string) {
	dir := os.Getenv("SOCKMQ_HEAP_PROFILE_DIR")
	if dir == "" {
		return
	}
	f, err := os.Create(filepath.Join(dir, "stored-"+name+".pprof"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		b.Fatal(err)
	}
}

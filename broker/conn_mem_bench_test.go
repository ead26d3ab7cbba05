package broker

import (
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkIdleConnMemory opens 1000 idle MQTT 3.1.1 connections (clean
// session, keepalive 60s, no subscription) and reports what each costs the
// process after a full GC: heap bytes in use, goroutine stack bytes, and
// goroutines per connection. The client side is raw sockets in the same
// process (no goroutines; a few hundred bytes each, included). RSS per
// connection of the real process is measured by scripts/bench.sh; with
// GOGC=100 it is roughly up to twice the live heap. queue= is
// limits.max_queued_messages (default 1024): mochi allocates each client's
// outbound queue up front, 8 bytes per slot.
func BenchmarkIdleConnMemory(b *testing.B) {
	for _, q := range []int32{1024, 128} {
		b.Run("queue="+strconv.Itoa(int(q)), func(b *testing.B) { idleConnMemory(b, q) })
	}
}

// idleConnMemory: each iteration opens n connections, measures, and closes
// them again; ns/op is the time to do that, the metrics are from the last
// iteration.
func idleConnMemory(b *testing.B, queue int32) {
	const n = 1000
	s := benchBroker(b, nil, func(c *Config) { c.Limits.MaxQueuedMessages = queue })
	var heap, stack, goroutines float64
	for b.Loop() {
		for s.SessionCount() > 0 {
			time.Sleep(time.Millisecond)
		}
		before := memSnapshot()
		conns := make([]net.Conn, 0, n)
		for i := 0; i < n; i++ {
			rc, code, err := dialMQTT(s.MQTTAddr(), "idle"+strconv.Itoa(i), "", "", true)
			if err != nil || code != 0 {
				b.Fatalf("connect %d: %v %d", i, err, code)
			}
			conns = append(conns, rc.c)
		}
		for s.SessionCount() < n {
			time.Sleep(time.Millisecond)
		}
		after := memSnapshot()
		heap = float64(after.heap-before.heap) / n
		stack = float64(after.stack-before.stack) / n
		goroutines = float64(after.goroutines-before.goroutines) / n
		for _, c := range conns {
			c.Close()
		}
	}
	b.ReportMetric(heap, "heap-B/conn")
	b.ReportMetric(stack, "stack-B/conn")
	b.ReportMetric(goroutines, "goroutines/conn")
}

type memStats struct {
	heap, stack uint64
	goroutines  int
}

func memSnapshot() memStats {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memStats{heap: m.HeapInuse, stack: m.StackInuse, goroutines: runtime.NumGoroutine()}
}

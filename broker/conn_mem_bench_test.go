package broker

import (
	"net"
	"runtime"
	"strconv"
	"testing"
	"time"
)

// BenchmarkIdleConnMemory opens 1000 idle MQTT 3.1.1 connections (clean
// session, keepalive 60s, one QoS 1 subscription each) and reports what each costs the
// process after a full GC: heap bytes in use, goroutine stack bytes, and
// goroutines per connection. The client side is raw sockets in the same
// process (no goroutines; a few hundred bytes each, included). RSS per
// connection of the real process is measured by scripts/bench.sh; with
// GOGC=100 it is roughly up to twice the live heap. queue= is
// limits.max_queued_messages (default 1024); the outbound queue is sized on
// demand, so it costs an idle connection nothing either way.
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
			if err := rc.subscribe("idle/"+strconv.Itoa(i)+"/cmd", 1); err != nil {
				b.Fatalf("subscribe %d: %v", i, err)
			}
			conns = append(conns, rc.c)
		}
		for s.SessionCount() < n {
			time.Sleep(time.Millisecond)
		}
		after := memSnapshot()
		heap = float64(int64(after.heap)-int64(before.heap)) / n
		stack = float64(int64(after.stack)-int64(before.stack)) / n
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

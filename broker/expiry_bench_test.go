package broker

import (
	"strconv"
	"testing"
	"time"
)

// mochi's event loop runs housekeeping every second whatever the load:
// clearExpiredInflights calls Client.ClearExpiredInflights for every client
// (connected or not), which copies and sorts the client's whole inflight
// map (Inflight.GetAll); clearExpiredRetainedMessages copies every retained
// message (Retained.GetAll). These benchmarks measure one such pass, so
// ns/op is the CPU time spent per second of wall time on that state, even
// when nothing is published. heap-B/msg is the live heap each stored
// message costs (after a full GC; 64-byte payloads, persistence off).

// BenchmarkExpiryScanInflight is one pass over an offline persistent
// session holding n queued QoS 1 messages (limits.max_inflight defaults to
// 8192).
func BenchmarkExpiryScanInflight(b *testing.B) {
	for _, n := range []int{1024, 8192} {
		b.Run("queued="+strconv.Itoa(n), func(b *testing.B) {
			s := benchBroker(b, nil, func(c *Config) { c.Persistence.Enabled = false })
			rc, code, err := dialMQTT(s.MQTTAddr(), "offline", "", "", false)
			if err != nil || code != 0 {
				b.Fatalf("connect: %v %d", err, code)
			}
			if err := rc.subscribe("bench/q", 1); err != nil {
				b.Fatal(err)
			}
			rc.disconnect()
			cl, ok := s.mq.Clients.Get("offline")
			for ok && !cl.Closed() {
				time.Sleep(time.Millisecond)
			}
			before := memSnapshot()
			for i := 0; i < n; i++ {
				if err := s.Publish(Message{Topic: "bench/q", Payload: make([]byte, 64), QoS: 1}); err != nil {
					b.Fatal(err)
				}
			}
			heap := float64(memSnapshot().heap-before.heap) / float64(n)
			if got := cl.State.Inflight.Len(); got != n {
				b.Fatalf("queued %d, want %d", got, n)
			}
			now := time.Now().Unix()
			b.ReportAllocs()
			for b.Loop() {
				cl.ClearExpiredInflights(now, 0) // what the event loop does every second
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
			b.ReportMetric(heap, "heap-B/msg")
		})
	}
}

// BenchmarkExpiryScanRetained is the copy of every retained message that
// clearExpiredRetainedMessages makes every second.
func BenchmarkExpiryScanRetained(b *testing.B) {
	for _, n := range []int{1000, 100000} {
		b.Run("retained="+strconv.Itoa(n), func(b *testing.B) {
			s := benchBroker(b, nil, func(c *Config) { c.Persistence.Enabled = false })
			before := memSnapshot()
			for i := 0; i < n; i++ {
				if err := s.Publish(Message{Topic: "bench/r/" + strconv.Itoa(i), Payload: make([]byte, 64), Retain: true}); err != nil {
					b.Fatal(err)
				}
			}
			heap := float64(memSnapshot().heap-before.heap) / float64(n)
			if got := len(s.mq.Topics.Retained.GetAll()); got < n {
				b.Fatalf("retained %d, want at least %d", got, n)
			}
			b.ReportAllocs()
			for b.Loop() {
				s.mq.Topics.Retained.GetAll()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/msg")
			b.ReportMetric(heap, "heap-B/msg")
		})
	}
}

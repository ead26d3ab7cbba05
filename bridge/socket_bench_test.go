package bridge_test

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// benchStack is a bridge whose sockets are pinged rarely, so that raw
// benchmark clients need not read after their setup.
func benchStack(b testing.TB) *stack {
	cfg := testConfig()
	cfg.PingInterval = 10 * time.Minute
	cfg.PingTimeout = 20 * time.Minute
	return startStackFull(b, cfg, nil, nil, nil)
}

// BenchmarkSocketSetup measures one socket's whole life from a raw client:
// TCP connect, upgrade, #handshake, #subscribe to its own channel, close.
// Allocations include the raw client's (a few hundred bytes).
func BenchmarkSocketSetup(b *testing.B) {
	st := benchStack(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		c, err := dialRawSC(st.b.HTTPAddr(), "/socketcluster/", fmt.Sprintf("setup/%d", i))
		if err != nil {
			b.Fatal(err)
		}
		_ = c.c.Close()
		i++
	}
}

// BenchmarkIdleSocket holds b.N idle sockets (handshake done, one channel
// each) and reports the server's live heap and goroutines per socket
// after a GC (heap-B/socket includes the raw client's connection and its
// 512-byte read buffer, about 1 KiB, as both ends live in the benchmark's
// process).
func BenchmarkIdleSocket(b *testing.B) {
	st := benchStack(b)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	g0 := runtime.NumGoroutine()
	b.ReportAllocs()
	conns := make([]*rawSC, 0, b.N)
	for i := 0; b.Loop(); i++ {
		c, err := dialRawSC(st.b.HTTPAddr(), "/socketcluster/", fmt.Sprintf("idle/%d", i))
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	b.StopTimer()
	// The raw clients' ping answerers are goroutines of the benchmark's
	// own; count them out.
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&after)
	n := float64(len(conns))
	b.ReportMetric(float64(after.HeapInuse-before.HeapInuse)/n, "heap-B/socket")
	b.ReportMetric(float64(runtime.NumGoroutine()-g0-len(conns))/n, "server-goroutines/socket")
	closeAll(conns)
}

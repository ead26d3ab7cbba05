package bridge_test

import (
	"bytes"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/sockmq/sockmq/broker"
)

// BenchmarkDeliverPaced measures the broker -> bridge -> socket path with
// real sockets, one message at a time: each op publishes one 64-byte
// message in process to a channel n raw clients subscribe to and waits
// until every client has read its frame, so that the bridge goes idle
// between messages as under a paced load (the cross-protocol scenario of
// issue 11). ns/op, B/op and allocs/op include the clients' reads (which
// allocate nothing) and the wait; ns/delivery divides by n.
func BenchmarkDeliverPaced(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) { benchDeliverPaced(b, n) })
	}
}

func benchDeliverPaced(b *testing.B, n int) {
	st := benchStack(b)
	const channel = "bench/deliver"
	msg := broker.Message{Topic: channel, Payload: bytes.Repeat([]byte("x"), 64)}
	var total atomic.Int64
	arrived := make(chan struct{}, 1)
	frameSize := 0
	conns := make([]*rawSC, n)
	for i := range conns {
		c, br, err := dialRawSCQuiet(st.b.HTTPAddr(), "/socketcluster/", channel)
		if err != nil {
			b.Fatal(err)
		}
		conns[i] = c
		// The first message tells the frame's size; from then on the
		// client only counts bytes (no allocation per read).
		if i == 0 {
			if err := st.b.Publish(msg); err != nil {
				b.Fatal(err)
			}
			op, p, err := readServerFrame(br)
			if err != nil || op != 1 || !bytes.Contains(p, []byte(`"#publish"`)) {
				b.Fatalf("first frame: op %d %q %v", op, p, err)
			}
			frameSize = 2 + len(p) // header: 2 bytes, 4 from 126 bytes
			if len(p) > 125 {
				frameSize += 2
			}
		}
		go func() {
			buf := make([]byte, 4096)
			for {
				k, err := br.Read(buf)
				if k > 0 {
					total.Add(int64(k))
					select {
					case arrived <- struct{}{}:
					default:
					}
				}
				if err != nil {
					return // closed by the benchmark's cleanup
				}
			}
		}()
	}
	b.Cleanup(func() { closeAll(conns) })
	want := int64(0)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := st.b.Publish(msg); err != nil {
			b.Fatal(err)
		}
		want += int64(n * frameSize)
		for total.Load() < want {
			<-arrived
		}
	}
	b.StopTimer()
	if got := total.Load(); got != want {
		b.Fatalf("clients read %d bytes, want %d (frame %d, n %d, N %d)", got, want, frameSize, n, b.N)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
}

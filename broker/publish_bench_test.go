package broker

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// Per-message hot paths. Run with
//
//	go test -run '^$' -bench . -benchmem ./broker
//
// Client-side work (the raw MQTT readers below) runs in the same process and
// is included in ns/op and allocs/op; it is small next to the broker's.

// BenchmarkPublishInline measures Server.Publish (QoS 0, 64 B) delivered to
// n in-process subscribers (Server.Subscribe handlers): the bridge's path
// from a broker message to its sockets. ns/op is per published message.
func BenchmarkPublishInline(b *testing.B) {
	for _, n := range []int{1, 10, 100} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			s := benchBroker(b, nil, nil)
			var got atomic.Int64
			for i := 0; i < n; i++ {
				cancel, err := s.Subscribe("bench/inline", func(Message) { got.Add(1) })
				if err != nil {
					b.Fatal(err)
				}
				defer cancel()
			}
			m := Message{Topic: "bench/inline", Payload: make([]byte, 64)}
			b.SetBytes(64)
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Publish(m); err != nil {
					b.Fatal(err)
				}
			}
			if want := int64(b.N * n); got.Load() != want {
				b.Fatalf("delivered %d, want %d", got.Load(), want)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// tcpSubscriber is a raw MQTT client that counts PUBLISH packets and
// acknowledges QoS 1 ones.
type tcpSubscriber struct {
	rc   *rawClient
	got  *atomic.Int64
	done chan struct{}
}

func newTCPSubscriber(b *testing.B, s *Server, id, filter string, qos byte, clean bool, got *atomic.Int64) *tcpSubscriber {
	b.Helper()
	rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", clean)
	if err != nil || code != 0 {
		b.Fatalf("connect %s: %v (code %d)", id, err, code)
	}
	if err := rc.subscribe(filter, qos); err != nil {
		b.Fatal(err)
	}
	t := &tcpSubscriber{rc: rc, got: got, done: make(chan struct{})}
	go t.read()
	return t
}

func (t *tcpSubscriber) read() {
	defer close(t.done)
	for {
		h, body, err := readPacket(t.rc.r)
		if err != nil {
			return
		}
		if h>>4 != 3 { // not PUBLISH
			continue
		}
		if (h>>1)&3 > 0 && len(body) >= 2 {
			tl := int(body[0])<<8 | int(body[1])
			if len(body) >= 4+tl {
				id := body[2+tl : 4+tl]
				if _, err := t.rc.c.Write([]byte{0x40, 2, id[0], id[1]}); err != nil {
					return
				}
			}
		}
		t.got.Add(1)
	}
}

func (t *tcpSubscriber) close() {
	t.rc.disconnect()
	<-t.done
}

// BenchmarkDeliverTCP measures Server.Publish (64 B) delivered over TCP to
// n MQTT 3.1.1 subscribers on 127.0.0.1, including mochi's per-client
// writer and the kernel. The publisher stays at most 256 messages ahead of
// the subscribers so nothing is dropped. With persistent=true the
// subscribers have clean_session=false, so every QoS 1 delivery is written
// to the store and deleted again when acknowledged.
func BenchmarkDeliverTCP(b *testing.B) {
	cases := []struct {
		subs       int
		qos        byte
		persistent bool
	}{{1, 0, false}, {10, 0, false}, {1, 1, false}, {1, 1, true}, {100, 1, false}}
	for _, c := range cases {
		b.Run(fmt.Sprintf("subs=%d/qos=%d/persistent=%v", c.subs, c.qos, c.persistent), func(b *testing.B) {
			s := benchBroker(b, nil, nil)
			var got atomic.Int64
			subs := make([]*tcpSubscriber, c.subs)
			for i := range subs {
				subs[i] = newTCPSubscriber(b, s, "sub"+strconv.Itoa(i), "bench/tcp", c.qos, !c.persistent, &got)
			}
			m := Message{Topic: "bench/tcp", Payload: make([]byte, 64), QoS: c.qos}
			n := int64(c.subs)
			const window = 256
			b.SetBytes(64)
			b.ReportAllocs()
			var sent int64
			for b.Loop() {
				for sent*n-got.Load() > window*n {
					runtime.Gosched()
				}
				if err := s.Publish(m); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			deadline := time.Now().Add(10 * time.Second)
			for got.Load() < sent*n && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*n), "ns/delivery")
			if got.Load() != sent*n {
				b.Fatalf("delivered %d, want %d", got.Load(), sent*n)
			}
			for _, t := range subs {
				t.close()
			}
		})
	}
}

// BenchmarkStoreQueueOffline measures the store's write path: a QoS 1
// message published to a persistent session (clean_session=false) that is
// offline is queued and written to the store (one bbolt put per message,
// grouped into one transaction per batch by the store's writer). ns/op
// includes waiting for every write to be committed (and fsynced when
// sync=true). A session holds at most limits.max_inflight (8192) messages,
// so every 8000 messages the session is discarded (outside the timer) and a
// fresh one takes its place.
func BenchmarkStoreQueueOffline(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run("sync="+strconv.FormatBool(sync), func(b *testing.B) {
			s := benchBroker(b, nil, func(c *Config) { c.Persistence.Sync = sync })
			const perSession = 8000
			sessions := 0
			id, topic := "", ""
			waitOffline := func() {
				for s.Connected(id) {
					time.Sleep(time.Millisecond)
				}
			}
			newSession := func() {
				if id != "" { // discard the previous session and its queue
					rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", true)
					if err != nil || code != 0 {
						b.Fatalf("connect: %v %d", err, code)
					}
					rc.disconnect()
					waitOffline()
					s.store.Sync()
				}
				id = "offline" + strconv.Itoa(sessions)
				topic = "bench/offline/" + strconv.Itoa(sessions)
				sessions++
				rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", false)
				if err != nil || code != 0 {
					b.Fatalf("connect: %v %d", err, code)
				}
				if err := rc.subscribe(topic, 1); err != nil {
					b.Fatal(err)
				}
				rc.disconnect()
				waitOffline()
				s.store.Sync()
			}
			newSession()
			m := Message{Topic: topic, Payload: make([]byte, 64), QoS: 1}
			dropped := s.metrics.inflightDropped.Load()
			b.SetBytes(64)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				if i > 0 && i%perSession == 0 {
					b.StopTimer()
					s.store.Sync()
					newSession()
					m.Topic = topic
					b.StartTimer()
				}
				if err := s.Publish(m); err != nil {
					b.Fatal(err)
				}
				i++
			}
			s.store.Sync()
			b.StopTimer()
			if d := s.metrics.inflightDropped.Load() - dropped; d != 0 {
				b.Fatalf("%d messages dropped instead of queued", d)
			}
		})
	}
}

// fastSubscriber is a raw MQTT 3.1.1 subscriber that costs little: it
// parses what one read brings from a reused buffer and acknowledges every
// QoS 1 PUBLISH of that read with one write.
type fastSubscriber struct {
	c    net.Conn
	got  *atomic.Int64
	done chan struct{}
}

func newFastSubscriber(b *testing.B, s *Server, id, filter string, got *atomic.Int64) *fastSubscriber {
	b.Helper()
	rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", true)
	if err != nil || code != 0 {
		b.Fatalf("connect %s: %v (code %d)", id, err, code)
	}
	if err := rc.subscribe(filter, 1); err != nil {
		b.Fatal(err)
	}
	if rc.r.Buffered() != 0 {
		b.Fatal("unexpected packets after SUBACK")
	}
	f := &fastSubscriber{c: rc.c, got: got, done: make(chan struct{})}
	go f.read()
	return f
}

func (f *fastSubscriber) read() {
	defer close(f.done)
	buf := make([]byte, 256<<10)
	var acks []byte
	have := 0
	for {
		n, err := f.c.Read(buf[have:])
		if err != nil {
			return
		}
		have += n
		p, count := 0, int64(0)
		for {
			_, rem, hdr, ok, ferr := frameHeader(buf[p:have])
			if ferr != nil {
				return
			}
			if !ok || p+hdr+rem > have {
				break
			}
			body := buf[p+hdr : p+hdr+rem]
			if buf[p]>>4 == 3 && (buf[p]>>1)&3 == 1 && len(body) >= 2 {
				tl := int(body[0])<<8 | int(body[1])
				acks = append(acks, 0x40, 2, body[2+tl], body[3+tl])
				count++
			}
			p += hdr + rem
		}
		have = copy(buf, buf[p:have])
		if len(acks) > 0 {
			if _, err := f.c.Write(acks); err != nil {
				return
			}
			acks = acks[:0]
		}
		f.got.Add(count)
	}
}

// BenchmarkFanoutQoS1 measures the broker's fan-out path end to end: a
// TCP publisher sends QoS 1 messages (64 B) that reach n QoS 1 TCP
// subscribers with clean sessions, the scenario of BENCHMARKS.md's
// "latency under load" (issue 11). The clients parse from reused buffers
// and acknowledge per read, so most of ns/delivery and allocs/op is the
// broker's (and the kernel's). The publisher stays at most 64 messages
// ahead of the slowest delivery so that nothing is dropped.
func BenchmarkFanoutQoS1(b *testing.B) {
	for _, n := range []int{10, 100} {
		b.Run("subs="+strconv.Itoa(n), func(b *testing.B) {
			s := benchBroker(b, nil, nil)
			var got atomic.Int64
			subs := make([]*fastSubscriber, n)
			for i := range subs {
				subs[i] = newFastSubscriber(b, s, "fsub"+strconv.Itoa(i), "bench/fan", &got)
			}
			pub, code, err := dialMQTT(s.MQTTAddr(), "fpub", "", "", true)
			if err != nil || code != 0 {
				b.Fatalf("connect publisher: %v (code %d)", err, code)
			}
			var acked atomic.Int64
			pubDone := make(chan struct{})
			go func() {
				defer close(pubDone)
				for {
					h, _, err := readPacket(pub.r)
					if err != nil {
						return
					}
					if h == 0x40 {
						acked.Add(1)
					}
				}
			}()
			payload := make([]byte, 64)
			pk := publishPacket("bench/fan", 1, payload)
			pidAt := len(pk) - len(payload) - 2
			const ahead = 64
			b.SetBytes(64)
			b.ReportAllocs()
			var sent int64
			for b.Loop() {
				for sent*int64(n)-got.Load() > ahead*int64(n) {
					runtime.Gosched()
				}
				pid := uint16(sent%65535 + 1)
				pk[pidAt], pk[pidAt+1] = byte(pid>>8), byte(pid)
				if _, err := pub.c.Write(pk); err != nil {
					b.Fatal(err)
				}
				sent++
			}
			deadline := time.Now().Add(10 * time.Second)
			for (got.Load() < sent*int64(n) || acked.Load() < sent) && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(sent*int64(n)), "ns/delivery")
			if got.Load() != sent*int64(n) || acked.Load() != sent {
				b.Fatalf("delivered %d of %d, %d of %d PUBACKs", got.Load(), sent*int64(n), acked.Load(), sent)
			}
			pub.c.Close()
			<-pubDone
			for _, f := range subs {
				f.c.Close()
				<-f.done
			}
		})
	}
}

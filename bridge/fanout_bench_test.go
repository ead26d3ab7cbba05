package bridge

import (
	"fmt"
	"testing"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
)

// benchBroker adapts the real broker for in-package benchmarks.
type benchBroker struct{ s *broker.Server }

func (a benchBroker) Publish(m Message) error { return a.s.Publish(broker.Message(m)) }
func (a benchBroker) Subscribe(f string, fn func(Message)) (func(), error) {
	return a.s.Subscribe(f, func(m broker.Message) { fn(Message(m)) })
}
func (a benchBroker) Retained(Identity, string) []Message { return nil }

// benchFanout publishes through the real broker to n sockets subscribed to
// one channel: one broker subscription, one serialisation, n enqueues per
// message. Queues are emptied between rounds (the writers are not running).
func benchFanout(b *testing.B, n int, check bool) {
	bk := testutil.StartBroker(b, testutil.BrokerConfig(b), nil)
	cfg := Defaults()
	cfg.MaxQueueBytes = 1 << 40
	h, err := New(cfg, Options{Broker: benchBroker{bk}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	socks := make([]*socket, n)
	for i := range socks {
		socks[i] = newSocket(h, nil, "bench")
		socks[i].writing = true // no writer goroutine: drain() empties the queues
		if _, err := h.hub.add(socks[i], "bench/t", "bench/t", check); err != nil {
			b.Fatal(err)
		}
	}
	if h.hub.size() != 1 {
		b.Fatalf("%d broker subscriptions", h.hub.size())
	}
	msg := broker.Message{Topic: "bench/t", Payload: []byte(`{"temperature":21.5,"unit":"C","sensor":"room1"}`)}
	drain := func() {
		for _, s := range socks {
			s.qmu.Lock()
			clear(s.queue)
			s.queue, s.queued = s.queue[:0], 0
			s.qmu.Unlock()
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if err := bk.Publish(msg); err != nil {
			b.Fatal(err)
		}
		if i%64 == 63 {
			b.StopTimer()
			drain()
			b.StartTimer()
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/delivery")
}

func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) { benchFanout(b, n, false) })
	}
	b.Run("sockets=1000/read-checked", func(b *testing.B) { benchFanout(b, 1000, true) })
}

func BenchmarkPublishFrame(b *testing.B) {
	h := &Handler{}
	for _, tc := range []struct {
		name    string
		payload []byte
		ct      string
	}{
		{"json", []byte(`{"temperature":21.5,"unit":"C","sensor":"room1"}`), ""},
		{"text", []byte(`hello world, this is a text message`), ContentTypeText},
		{"binary", []byte{0, 1, 2, 3, 0xff, 0xfe, 0xfd, 7, 8, 9, 10, 11, 12, 13, 14, 15}, ContentTypeBinary},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := &Message{Topic: "sensors/room1/temp", Payload: tc.payload, ContentType: tc.ct}
			b.ReportAllocs()
			for b.Loop() {
				h.publishFrame("sensors/+/temp", true, m)
			}
		})
	}
}

func BenchmarkToMQTT(b *testing.B) {
	for _, tc := range []struct{ name, data string }{
		{"string", `"hello world"`}, {"object", `{"a":1,"b":[1,2,3]}`}, {"binary", `{"base64":true,"data":"AQID/w=="}`},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				toMQTT([]byte(tc.data))
			}
		})
	}
}

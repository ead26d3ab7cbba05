package bridge_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// Frames reach a socket whole and in publish order whether the publisher's
// goroutine wrote them at once (an idle socket) or the kernel refused part
// of a write and a writer goroutine took over: a client that stops reading
// while 16 MiB are published (more than the loopback socket buffers hold),
// then reads again, gets every message once, in order, and so do the
// messages published after the backlog has drained.
func TestOrderAcrossDirectAndQueuedWrites(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueueBytes = 64 << 20
	cfg.PingTimeout = 60 * time.Second
	// A paused reader must not trip the write timeout while a slow (race
	// detector, loaded machine) publisher is still filling the backlog.
	cfg.WriteTimeout = 60 * time.Second
	st := startStack(t, cfg, nil)
	c := st.connect(t)
	c.Subscribe("seq")

	pad := strings.Repeat("x", 8<<10)
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			p := fmt.Sprintf(`{"i":%d,"pad":%q}`, i, pad)
			if err := st.b.Publish(broker.Message{Topic: "seq", Payload: []byte(p)}); err != nil {
				t.Fatal(err)
			}
		}
	}
	isPub := func(p scproto.Packet) bool { return p.Event == "#publish" }
	const backlog, after = 2000, 200

	stop := testutil.PauseReader(c)
	publish(0, backlog)
	close(stop)
	if !waitCount(c, isPub, backlog, 60*time.Second) {
		t.Fatalf("backlog: %d of %d messages read", c.Count(isPub), backlog)
	}
	publish(backlog, backlog+after) // one at a time, mostly written at once
	testutil.WaitFor(t, 30*time.Second, func() bool { return c.Count(isPub) >= backlog+after }, "the later messages read")

	// Everything written: nothing counts against max_queue_bytes any
	// more (a leak there would close healthy sockets as slow consumers).
	testutil.WaitFor(t, 5*time.Second, func() bool { return st.h.QueuedBytesForTest() == 0 }, "queued bytes back to 0")

	next := 0
	for _, p := range c.Packets() {
		if !isPub(p) {
			continue
		}
		var m struct {
			I int `json:"i"`
		}
		if err := json.Unmarshal(testutil.AsPub(p).Data, &m); err != nil {
			t.Fatalf("message %d: %v", next, err)
		}
		if m.I != next {
			t.Fatalf("message %d arrived where %d was due", m.I, next)
		}
		next++
	}
	if next != backlog+after {
		t.Fatalf("%d messages, want %d", next, backlog+after)
	}
}

// rawMQTTBurst connects a raw MQTT 3.1.1 client and sends n QoS 0
// publishes to topic in one TCP write, so that the broker reads them in
// one batch. Payloads are {"i":<k>}.
func rawMQTTBurst(t *testing.T, addr, topic string, n int) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	id := "burst"
	connect := []byte{0x10, byte(12 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}
	if _, err := c.Write(append(connect, id...)); err != nil {
		t.Fatal(err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	var burst []byte
	for i := range n {
		payload := fmt.Sprintf(`{"i":%d}`, i)
		burst = append(burst, 0x30, byte(2+len(topic)+len(payload)), 0, byte(len(topic)))
		burst = append(burst, topic...)
		burst = append(burst, payload...)
	}
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	return c
}

// Publishes the broker reads in one batch reach a socket in one write:
// the frames come as JSON-array batches, every message once, in order.
func TestBrokerReadBatchIsOneWrite(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.connect(t)
	c.Subscribe("burst")
	const n = 100
	rawMQTTBurst(t, st.b.MQTTAddr(), "burst", n)
	checkBurst(t, c, n)
	testutil.WaitFor(t, 5*time.Second, func() bool { return st.h.QueuedBytesForTest() == 0 }, "queued bytes back to 0")
	if c.Batches() == 0 {
		t.Error("a burst of publishes read in one batch came as one frame per message (no JSON-array batch)")
	}
}

// checkBurst waits for n publishes of {"i": 0..n-1} on c and checks that
// each came once, in order.
func checkBurst(t *testing.T, c *scClient, n int) {
	t.Helper()
	isPub := func(p scproto.Packet) bool { return p.Event == "#publish" }
	testutil.WaitFor(t, 10*time.Second, func() bool { return c.Count(isPub) >= n }, "the burst delivered")
	next := 0
	for _, p := range c.Packets() {
		if !isPub(p) {
			continue
		}
		var m struct {
			I int `json:"i"`
		}
		if err := json.Unmarshal(testutil.AsPub(p).Data, &m); err != nil || m.I != next {
			t.Fatalf("message %d: got %s (%v)", next, testutil.AsPub(p).Data, err)
		}
		next++
	}
	if next != n {
		t.Fatalf("%d messages, want %d", next, n)
	}
}

// waitCount polls until c has at least n packets matching pred.
func waitCount(c *testutil.SCClient, pred func(scproto.Packet) bool, n int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for c.Count(pred) < n {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// maskedTextFrames returns the WebSocket text frames of msgs as a client
// sends them (masked; a zero key leaves the bytes as they are), to be
// written with one write so that the bridge reads them together.
func maskedTextFrames(msgs []string) []byte {
	var b []byte
	for _, m := range msgs {
		if len(m) > 125 {
			panic("maskedTextFrames: message too long for a one-byte length")
		}
		b = append(b, 0x81, 0x80|byte(len(m)), 0, 0, 0, 0)
		b = append(b, m...)
	}
	return b
}

// Publishes a SocketCluster client sends in one write reach a subscriber
// socket in one write (JSON-array batches), every message once and in
// order, as a burst from an MQTT client does.
func TestSocketReadBatchIsOneWrite(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	sub := st.connect(t)
	sub.Subscribe("burst")
	pub := st.connect(t)
	const n = 100
	msgs := make([]string, n)
	for i := range msgs {
		msgs[i] = fmt.Sprintf(`{"event":"#publish","data":{"channel":"burst","data":{"i":%d}}}`, i)
	}
	if _, err := pub.Conn().UnderlyingConn().Write(maskedTextFrames(msgs)); err != nil {
		t.Fatal(err)
	}
	checkBurst(t, sub, n)
	if sub.Batches() == 0 {
		t.Error("a burst of publishes read from one socket in one read came as one frame per message (no JSON-array batch)")
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return st.h.QueuedBytesForTest() == 0 }, "queued bytes back to 0")
}

// stalledStore is a broker whose store never commits for PublishAsync
// (its done is never called), as when the disk hangs; Publish still works.
type stalledStore struct {
	bridge.Broker
	mu      sync.Mutex
	pending int
}

func (b *stalledStore) PublishAsync(m bridge.Message, done func(error)) {
	b.mu.Lock()
	b.pending++
	b.mu.Unlock()
}

// A socket has at most 256 publishes waiting for a store commit: the
// next one is published synchronously (its reader waits) and counted in
// sockmq_bridge_publish_waits_total, instead of piling up waiters.
func TestPendingPublishesAreBounded(t *testing.T) {
	sb := &stalledStore{}
	st := startStackWith(t, testConfig(), nil, func(b bridge.Broker) bridge.Broker { sb.Broker = b; return sb })
	c := st.connect(t)
	for i := range 256 {
		c.Call("#publish", fmt.Sprintf(`{"channel":"stall","data":%d}`, i))
	}
	testutil.WaitFor(t, 5*time.Second, func() bool {
		sb.mu.Lock()
		defer sb.mu.Unlock()
		return sb.pending == 256
	}, "256 publishes waiting for the store")
	if r := c.Invoke("#publish", `{"channel":"stall","data":"one more"}`); r.Error != nil {
		t.Fatalf("publish beyond the bound refused: %s", r.Error)
	}
	sb.mu.Lock()
	pending := sb.pending
	sb.mu.Unlock()
	if pending != 256 {
		t.Fatalf("%d publishes waiting for the store, want at most 256", pending)
	}
	if got := st.metric("sockmq_bridge_publish_waits_total"); got != 1 {
		t.Fatalf("sockmq_bridge_publish_waits_total = %v, want 1", got)
	}
}

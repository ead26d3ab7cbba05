package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// TestPacedLatencyFromScheduledTime: with --rate against a real broker,
// latency is measured from each message's scheduled send time, every
// message due is sent and received, and the accounting adds up.
func TestPacedLatencyFromScheduledTime(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	r := runJSON(t, "mqtt", "--addr", b.MQTTAddr(), "--pubs", "1", "--subs", "2", "--qos", "1", "--rate", "400",
		"--msgs", "200", "--window", "0", "--timeout", "60s")
	if r.LatFrom != "scheduled" {
		t.Errorf("lat_from %q, want scheduled", r.LatFrom)
	}
	if r.Scheduled != 200 || r.Published != 200 || r.NeverSent != 0 {
		t.Errorf("scheduled %d, published %d, never sent %d; want 200, 200, 0", r.Scheduled, r.Published, r.NeverSent)
	}
	if r.Expected != 400 || r.Delivered != 400 || r.NotReceived != 0 {
		t.Errorf("expected %d delivered %d not received %d", r.Expected, r.Delivered, r.NotReceived)
	}
	// Sending 200 messages at 400/s takes about half a second.
	if r.PublishSecs < 0.45 {
		t.Errorf("published in %.2fs; at 400 msg/s 200 messages take about 0.5s", r.PublishSecs)
	}
	if r.LatP50Ms <= 0 || r.LatP99Ms < r.LatP50Ms || r.SendLagMaxMs < 0 {
		t.Errorf("latency p50 %v p99 %v, send lag max %v", r.LatP50Ms, r.LatP99Ms, r.SendLagMaxMs)
	}
	if r.ClientCores < 1 || r.ClientCoreUtil <= 0 || r.ClientCoreUtil > 1.5 {
		t.Errorf("client cores %d, core utilisation %v", r.ClientCores, r.ClientCoreUtil)
	}
}

// TestLatePublisherCountsLatenessAndNeverSent: a publisher that cannot
// keep up with its rate (a broker that acknowledges every QoS 1 publish
// only after 20 ms, one publish in flight at a time) does not hide its
// lateness: the latency of what was sent grows with the delay, and the
// messages whose time came but were never sent are reported.
func TestLatePublisherCountsLatenessAndNeverSent(t *testing.T) {
	s := startSlowAcker(t, 20*time.Millisecond)
	r := runJSON(t, "mqtt", "--addr", s.ln.Addr().String(), "--subs", "0", "--qos", "1", "--inflight", "1",
		"--rate", "1000", "--msgs", "0", "--duration", "600ms", "--timeout", "60s")
	// About 600 messages were due; one acknowledgement per 20 ms lets
	// about 30 through.
	if r.Scheduled < 500 || r.Scheduled > 700 {
		t.Errorf("scheduled %d, want about 600", r.Scheduled)
	}
	if r.Published > 60 || r.NeverSent != r.Scheduled-r.Published || r.NeverSent < 400 {
		t.Errorf("published %d, never sent %d of %d scheduled", r.Published, r.NeverSent, r.Scheduled)
	}
	// Message k is sent about 20k ms after start but was due at k ms: by
	// the 25th the publisher is about 475 ms late.
	if r.SendLagMaxMs < 300 {
		t.Errorf("send lag max %v ms; the publisher fell far behind", r.SendLagMaxMs)
	}
	var out, errb bytes.Buffer
	code := run([]string{"mqtt", "--addr", s.ln.Addr().String(), "--subs", "0", "--qos", "1", "--inflight", "1",
		"--rate", "1000", "--msgs", "0", "--duration", "200ms"}, &out, &errb)
	if code != 0 || !strings.Contains(out.String(), "never sent") || !strings.Contains(out.String(), "from the scheduled time") {
		t.Fatalf("exit %d, text output lacks never-sent / scheduled-time lines:\n%s%s", code, out.String(), errb.String())
	}
}

// TestSentButNotReceived: messages acknowledged by the broker but never
// delivered to the subscriber are reported as sent but not received, and
// as still on their way when publishing ended.
func TestSentButNotReceived(t *testing.T) {
	s := startSlowAcker(t, time.Millisecond) // grants SUBSCRIBE, forwards nothing
	r := runJSON(t, "mqtt", "--addr", s.ln.Addr().String(), "--subs", "2", "--qos", "1", "--msgs", "30",
		"--rate", "1000", "--window", "0", "--drain", "200ms", "--timeout", "60s")
	if r.Published != 30 || r.NeverSent != 0 || r.Expected != 60 || r.Delivered != 0 || r.NotReceived != 60 {
		t.Fatalf("published %d never sent %d expected %d delivered %d not received %d",
			r.Published, r.NeverSent, r.Expected, r.Delivered, r.NotReceived)
	}
	if r.PendingAtPubEnd != 60 {
		t.Errorf("pending at publish end %d, want 60", r.PendingAtPubEnd)
	}
}

// fakePub records payloads and blocks on one of them.
type fakePub struct {
	payloads [][]byte
	stallAt  int
	stall    time.Duration
}

func (f *fakePub) Publish(p []byte) error {
	if len(f.payloads) == f.stallAt {
		time.Sleep(f.stall)
	}
	f.payloads = append(f.payloads, p)
	return nil
}
func (f *fakePub) Flush(time.Duration) error { return nil }
func (f *fakePub) Close()                    {}

// TestPayloadCarriesScheduledTime: a publisher stalled for 100 ms stamps
// the messages after the stall with their scheduled times (start + seq /
// rate), not with the time they were written.
func TestPayloadCarriesScheduledTime(t *testing.T) {
	o := &pubsubOpts{rate: 1000, msgs: 40}
	f := &fakePub{stallAt: 10, stall: 100 * time.Millisecond}
	start := time.Now()
	ps := publishLoop(t.Context(), o, &runState{}, f, 3, start)
	if ps.sent != 40 || ps.scheduled != 40 || len(f.payloads) != 40 {
		t.Fatalf("sent %d scheduled %d payloads %d", ps.sent, ps.scheduled, len(f.payloads))
	}
	for seq, p := range f.payloads {
		ts, pub, got, ok := parsePayload(p)
		want := start.Add(time.Duration(seq) * time.Millisecond).UnixNano()
		if !ok || pub != 3 || got != seq || ts != want {
			t.Fatalf("message %d: stamp %d (want %d), pub %d, seq %d", seq, ts, want, pub, got)
		}
	}
	if ps.lag.max < int64(90*time.Millisecond) {
		t.Errorf("send lag max %v; message 10 was written 100 ms late", time.Duration(ps.lag.max))
	}
}

// TestIdleConnsWithSubscription: conns --sub opens connections that each
// hold one subscription (SUBACK checked) and reports them ready.
func TestIdleConnsWithSubscription(t *testing.T) {
	if got, want := subscribePacket(1, "a/b", 1), []byte{0x82, 8, 0, 1, 0, 3, 'a', '/', 'b', 1}; !bytes.Equal(got, want) {
		t.Fatalf("subscribe packet % x, want % x", got, want)
	}
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	var out, errb bytes.Buffer
	code := run([]string{"conns", "--addr", b.MQTTAddr(), "--n", "20", "--sub", "--hold", "0s", "--json"}, &out, &errb)
	if code != 0 || !strings.HasPrefix(out.String(), "READY 20 0\n") || !strings.Contains(out.String(), `"connected":20`) {
		t.Fatalf("exit %d, output %q, stderr %q", code, out.String(), errb.String())
	}
}

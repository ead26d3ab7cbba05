package broker_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
)

// After a burst of retained messages the broker goes quiet and gives the
// memory the burst used but no longer needs back to the operating system
// (sockmq_memory_trims_total counts it), while every message stays.
func TestMemoryTrimAfterBurst(t *testing.T) {
	const retained = 30000
	p := testutil.StartProc(t, testutil.ProcOptions{})
	pub := testutil.MustConnect5(t, p.MQTT, "burst")
	payload := bytes.Repeat([]byte("x"), 64)
	ctx := context.Background()
	for i := range retained {
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("burst/%d/v", i), Retain: true, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	// Scrapes allocate in the broker too: poll slowly, as Prometheus would,
	// so that the broker can go quiet.
	pollSlowly(t, 30*time.Second, func() bool { return p.Metric(t, "sockmq_retained_messages") >= retained }, "30,000 retained messages")
	peak := p.RSS(t)
	trims := p.Metric(t, "sockmq_memory_trims_total")
	pollSlowly(t, 20*time.Second, func() bool { return p.Metric(t, "sockmq_memory_trims_total") > trims }, "a memory trim after the burst")
	// The runtime's scavenger returns the freed pages over the next
	// seconds, a few MiB at a time.
	var after int64
	pollSlowly(t, 30*time.Second, func() bool { after = p.RSS(t); return after < peak-(4<<20) }, "RSS 4 MiB below the peak after the trim")
	t.Logf("RSS after %d retained messages: %.1f MiB; after the trim: %.1f MiB", retained, float64(peak)/(1<<20), float64(after)/(1<<20))
	// Nothing was lost: the messages are all still retained and served.
	if n := p.Metric(t, "sockmq_retained_messages"); n < retained { // plus $SYS topics
		t.Errorf("%v retained messages after the trim, want at least %d", n, retained)
	}
	sub := testutil.MustConnect5(t, p.MQTT, "reader")
	for _, i := range []int{0, 12345, retained - 1} {
		tp := fmt.Sprintf("burst/%d/v", i)
		sub.Sub(t, tp, 0)
		if m := sub.Next(t); m.Topic != tp || !m.Retain || !bytes.Equal(m.Payload, payload) {
			t.Fatalf("retained %s: got %s retain=%v %q", tp, m.Topic, m.Retain, m.Payload)
		}
	}
}

// pollSlowly checks cond every 500 ms until it holds or timeout passes.
func pollSlowly(t *testing.T, timeout time.Duration, cond func() bool, what string) {
	t.Helper()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, what)
		}
		<-tick.C
	}
}

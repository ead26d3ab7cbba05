package limit

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestBucket(t *testing.T) {
	now := time.Unix(1000, 0)
	b := NewBucket(10, 5)
	for i := 0; i < 5; i++ {
		if !b.Take(1, now) {
			t.Fatalf("take %d of the burst refused", i)
		}
	}
	if b.Take(1, now) {
		t.Fatal("6th take within the same instant allowed; burst is 5")
	}
	now = now.Add(100 * time.Millisecond) // one token at 10/s
	if !b.Take(1, now) || b.Take(1, now) {
		t.Fatal("after 100ms exactly one token should be available")
	}
	now = now.Add(time.Hour)
	if got := b.TakeUpTo(8, now); got != 5 {
		t.Fatalf("TakeUpTo after a long pause = %d, want the burst 5", got)
	}
	var unlimited Bucket
	if !unlimited.Unlimited() || !unlimited.Take(1<<20, now) || unlimited.TakeUpTo(7, now) != 7 {
		t.Fatal("the zero Bucket must refuse nothing")
	}
}

func TestLoginGuardDelays(t *testing.T) {
	g := NewLoginGuard(LoginGuardConfig{Free: 2, Base: 100 * time.Millisecond, Max: time.Second, Window: time.Minute})
	now := time.Unix(1000, 0)
	want := []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond, time.Second, time.Second}
	for i, w := range want {
		if got := g.Failed("192.0.2.7:4000", now); got != w {
			t.Fatalf("failure %d: delay %v, want %v", i+1, got, w)
		}
	}
	// Another port of the same host shares the count; another host does not.
	if got := g.Failed("192.0.2.7:4001", now); got != time.Second {
		t.Fatalf("same host, other port: delay %v, want 1s", got)
	}
	if got := g.Failed("192.0.2.8:4000", now); got != 0 {
		t.Fatalf("other host: delay %v, want 0", got)
	}
	// IPv6 hosts are keyed by /64.
	g.Failed("[2001:db8::1]:1", now)
	if g.Failures("[2001:db8::2]:1", now) != 1 || g.Failures("[2001:db8:0:1::1]:1", now) != 0 {
		t.Fatal("IPv6 failures must be shared within a /64 and only there")
	}
	// Failures are forgotten after the window.
	if got := g.Failed("192.0.2.7:4000", now.Add(2*time.Minute)); got != 0 {
		t.Fatalf("after the window: delay %v, want 0", got)
	}
}

func TestLoginGuardBounded(t *testing.T) {
	g := NewLoginGuard(LoginGuardConfig{MaxAddresses: 100})
	now := time.Unix(1000, 0)
	for i := 0; i < 1000; i++ {
		g.Failed("10.0."+itoa(i/250)+"."+itoa(i%250)+":1", now)
	}
	if n := g.Tracked(); n > 100 {
		t.Fatalf("tracked %d addresses, cap is 100", n)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestRecorderCountsAndRateLimitsLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	reg := prometheus.NewRegistry()
	r := NewRecorder(reg, log, "a")
	r2 := NewRecorder(reg, nil) // a second component on the same registry shares the metric
	for i := 0; i < 5; i++ {
		r.Hit("a", "limit a reached", "key", "limits.a")
	}
	r2.Hit("b", "limit b reached")
	if got := r.Count("a"); got != 5 {
		t.Fatalf("count a = %v, want 5", got)
	}
	if got := r.Count("b"); got != 1 {
		t.Fatalf("count b (recorded by the second recorder) = %v, want 1", got)
	}
	if n := strings.Count(buf.String(), "limit a reached"); n != 1 {
		t.Fatalf("logged %d lines for 5 hits within LogInterval, want 1:\n%s", n, buf.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		if mf.GetName() == "sockmq_limit_refusals_total" {
			found = true
		}
	}
	if !found {
		t.Fatal("sockmq_limit_refusals_total not exported")
	}
}

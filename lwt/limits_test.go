package lwt_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/lwt"
)

// will returns a setWill request on channel whose topic, payload and
// content type hold n bytes together (textEncoder maps the channel to the
// same topic and the data to text/plain).
func will(channel string, n int, delay float64) lwt.Request {
	x := strings.Repeat("x", n-len(channel)-len("text/plain"))
	return lwt.Request{Channel: channel, Data: json.RawMessage(`"` + x + `"`), DelaySeconds: delay}
}

func errName(err error) string {
	var e *lwt.Error
	if errors.As(err, &e) {
		return e.Name
	}
	if err != nil {
		return err.Error()
	}
	return ""
}

func TestWillLimits(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	a := &prefixAuth{}
	a.prefix.Store("wills/")
	rec := limit.NewRecorder(prometheus.NewRegistry(), nil)
	r := lwt.New(lwt.Config{MaxWillsPerSocket: 2, MaxBytesPerUser: 300, MaxBytes: 500}, textEncoder{}, a, brokerPub{b}, rec, testutil.Logger(t))
	t.Cleanup(r.Close)
	alice1 := lwt.Owner{SessionID: "s1", Username: "alice"}
	alice2 := lwt.Owner{SessionID: "s2", Username: "alice"}

	// Per socket: two channels. Replacing one is not a third.
	for _, req := range []lwt.Request{will("wills/a1", 100, 0), will("wills/a2", 100, 0), will("wills/a1", 100, 0)} {
		if err := r.Set(alice1, req); err != nil {
			t.Fatalf("%s: %v", req.Channel, err)
		}
	}
	if err := r.Set(alice1, will("wills/a3", 30, 0)); errName(err) != "LimitExceededError" {
		t.Fatalf("third will of one socket: %v, want LimitExceededError", err)
	}
	// Per user, across sockets: alice holds 200 of her 300 bytes.
	if err := r.Set(alice2, will("wills/b1", 101, 0)); errName(err) != "LimitExceededError" {
		t.Fatalf("will past the user's bytes: %v, want LimitExceededError", err)
	}
	if err := r.Set(alice2, will("wills/b1", 100, 0)); err != nil {
		t.Fatalf("will within the user's bytes: %v", err)
	}
	// Anonymous sockets count one by one; the total caps them all (alice
	// holds 300 of 500).
	if err := r.Set(lwt.Owner{SessionID: "s3"}, will("wills/c1", 150, 0)); err != nil {
		t.Fatal(err)
	}
	if err := r.Set(lwt.Owner{SessionID: "s4"}, will("wills/d1", 100, 0)); errName(err) != "LimitExceededError" {
		t.Fatalf("will past the total: %v, want LimitExceededError", err)
	}
	// Delayed wills of ended sockets stay counted until they are sent or
	// cancelled; a clean end or clearWill frees the bytes at once.
	if err := r.Set(alice1, will("wills/a1", 100, 3600)); err != nil {
		t.Fatal(err)
	}
	r.Ended("s1", false) // wills/a1 pending (delayed), wills/a2 sent now
	r.Clear(alice2, "wills/b1")
	if err := r.Set(alice2, will("wills/b2", 201, 0)); errName(err) != "LimitExceededError" {
		t.Fatalf("the pending will's bytes were not counted: %v", err)
	}
	r.Clear(alice2, "wills/a1") // alice is back on that channel: cancels the pending will
	if err := r.Set(alice2, will("wills/b2", 201, 0)); err != nil {
		t.Fatalf("after the pending will was cancelled: %v", err)
	}
	if got := rec.Count("lwt_wills_per_socket") + rec.Count("lwt_bytes_per_user") + rec.Count("lwt_bytes_total"); got != 4 {
		t.Errorf("refusals counted: %v, want 4", got)
	}
	if rec.Count("lwt_wills_per_socket") != 1 || rec.Count("lwt_bytes_total") != 1 {
		t.Errorf("refusals by limit: per socket %v, total %v", rec.Count("lwt_wills_per_socket"), rec.Count("lwt_bytes_total"))
	}
}

// delaySeconds is checked as a number before it becomes a duration: 1e10
// seconds overflowed time.Duration and made the will fire at once.
func TestWillDelayOverflow(t *testing.T) {
	b, r, _, watcher := setup(t)
	o := lwt.Owner{SessionID: "s1", Username: "alice"}
	for _, d := range []float64{1e10, 1e300, math.Inf(1), math.NaN(), 3601} {
		if err := r.Set(o, lwt.Request{Channel: "wills/x", Data: json.RawMessage(`"x"`), DelaySeconds: d}); errName(err) != "InvalidArgumentsError" {
			t.Errorf("delaySeconds %v: %v, want InvalidArgumentsError", d, err)
		}
	}
	r.Ended("s1", false)
	sentinel(t, b, watcher) // no will was registered, so none is sent
}

package main

import (
	"bytes"
	"encoding/json"
	"math/rand"
	"testing"
	"time"
)

func TestPayloadRoundTrip(t *testing.T) {
	for _, size := range []int{0, 10, 64, 1024} {
		p := appendPayload(nil, 1700000000123456789, 42, 65537, size)
		if len(p) < size {
			t.Fatalf("size %d: payload is %d bytes", size, len(p))
		}
		if json.Valid(p) {
			t.Fatalf("payload %q is valid JSON; the bridge would not deliver it as a string", p)
		}
		ts, pub, seq, ok := parsePayload(p)
		if !ok || ts != 1700000000123456789 || pub != 42 || seq != 65537 {
			t.Fatalf("parse %q = %d %d %d %v", p, ts, pub, seq, ok)
		}
	}
	for _, bad := range []string{"", "x1,2,3,", "m1,2,3", "m,1,2,", "m1,2", `"m1,2,3,"`} {
		if _, _, _, ok := parsePayload([]byte(bad)); ok {
			t.Errorf("parsePayload(%q) accepted", bad)
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h histogram
	r := rand.New(rand.NewSource(1))
	for i := 0; i < 100000; i++ {
		h.record(int64(r.Intn(10_000_000))) // uniform 0..10ms
	}
	for _, q := range []float64{0.5, 0.9, 0.99} {
		got := float64(h.quantile(q))
		want := q * 10_000_000
		if got < want*0.97 || got > want*1.03 {
			t.Errorf("q%.2f = %v, want about %v", q, time.Duration(got), time.Duration(want))
		}
	}
	for _, v := range []int64{0, 1, 127, 128, 129, 1 << 40, 1<<62 + 12345} {
		if i := hIndex(v); i < 0 || i >= hBuckets {
			t.Fatalf("hIndex(%d) = %d out of range", v, i)
		}
		if mid := hValue(hIndex(v)); v > 1000 && (float64(mid) < float64(v)*0.98 || float64(mid) > float64(v)*1.02) {
			t.Errorf("hValue(hIndex(%d)) = %d, more than 2%% off", v, mid)
		}
	}
}

func TestTrackerCountsLossAndDuplicates(t *testing.T) {
	tr := newTracker(2)
	for _, seq := range []int{0, 1, 2, 2, 500, 1} {
		tr.record(0, seq, 1000, 1)
	}
	tr.record(1, 0, 1000, 1)
	tr.record(5, 0, 1000, 1) // unknown publisher
	if tr.unique != 5 || tr.dups != 2 || tr.bad != 1 {
		t.Fatalf("unique %d dups %d bad %d", tr.unique, tr.dups, tr.bad)
	}
}

func TestLoopbackOnly(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:1883", "localhost:1", "[::1]:1883", "127.1.2.3:80"} {
		if err := checkLoopbackAddr(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{"10.0.0.1:1883", "example.com:1883", "0.0.0.0:1883", "192.168.1.1:1", "1883"} {
		if checkLoopbackAddr(bad) == nil {
			t.Errorf("%s accepted", bad)
		}
	}
	if checkLoopbackURL("ws://127.0.0.1:8080/socketcluster/") != nil || checkLoopbackURL("ws://10.1.1.1/") == nil || checkLoopbackURL("wss://127.0.0.1/") == nil {
		t.Error("URL checks wrong")
	}
}

func TestConnectPacket(t *testing.T) {
	p := connectPacket("id", "u", "p", 60)
	want := []byte{0x10, 20, 0, 4, 'M', 'Q', 'T', 'T', 4, 0xC2, 0, 60, 0, 2, 'i', 'd', 0, 1, 'u', 0, 1, 'p'}
	if !bytes.Equal(p, want) {
		t.Fatalf("connect packet\n got % x\nwant % x", p, want)
	}
}

func TestRefusesNonLoopbackTargets(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"mqtt", "--addr", "192.0.2.1:1883"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2 (%s)", code, errb.String())
	}
	if code := run([]string{"sc-conns", "--url", "ws://192.0.2.1/"}, &out, &errb); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
}

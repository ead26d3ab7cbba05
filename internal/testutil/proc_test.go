package testutil

import (
	"testing"
	"time"
)

func TestProcAndHealthy(t *testing.T) {
	p := StartProc(t, ProcOptions{})
	h := StartHealthy(t, p.MQTT, 0)
	WaitFor(t, 10*time.Second, func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.rtts) >= 3 }, "3 probes")
	t.Log(h.Check(t), "rss", p.RSS(t)>>20, "MiB")
}

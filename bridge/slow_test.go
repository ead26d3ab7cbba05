package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// A socket that stops reading is closed as a slow consumer once its queue
// passes max_queue_bytes; the other sockets on the channel keep receiving
// everything, and the MQTT publisher is never slowed down.
func TestSlowConsumer(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueueBytes = 1 << 20
	cfg.PingTimeout = 30 * time.Second // only the queue limit may close it
	st := startStack(t, cfg, nil)

	slow := st.connect(t)
	slow.Subscribe("firehose")
	slowID := ""
	st.obs.mu.Lock()
	slowID = st.obs.opened[0]
	st.obs.mu.Unlock()
	fast := st.connect(t)
	fast.Subscribe("firehose")

	// The slow socket stops reading: TCP buffers fill up and the bridge's
	// queue for it grows.
	stop := testutil.PauseReader(slow)

	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev")
	payload := strings.Repeat("x", 32<<10)
	const n = 400 // 12.8 MiB: far more than socket buffers plus the queue
	isPub := func(p scproto.Packet) bool { return p.Event == "#publish" }
	start := time.Now()
	for i := range n {
		dev.Pub(t, "firehose", 0, false, payload)
		if i%4 == 3 {
			// Pace the publisher to what the fast socket can take, so
			// that only the stalled one overflows.
			testutil.WaitFor(t, 10*time.Second, func() bool { return fast.Count(isPub) == i+1 }, "fast socket keeps up")
		}
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return fast.Count(isPub) == n }, "fast socket got everything")
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("publishing took %v", d)
	}
	testutil.WaitFor(t, 10*time.Second, func() bool { return st.metric("sockmq_bridge_slow_consumers_total") == 1 }, "slow consumer counted")
	testutil.WaitFor(t, 15*time.Second, func() bool { _, ok := st.obs.closeOf(slowID); return ok }, "slow socket closed")
	if info, _ := st.obs.closeOf(slowID); info.Code != bridge.CloseSlowConsumer || info.Clean {
		t.Errorf("slow socket close %+v", info)
	}
	close(stop)
	// The fast socket is still fine.
	if r := fast.Invoke("#subscribe", `{"channel":"still/here"}`); r.Error != nil {
		t.Fatal(r.Error)
	}
}

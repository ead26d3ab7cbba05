package bridge_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

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
	testutil.WaitFor(t, 60*time.Second, func() bool { return c.Count(isPub) >= backlog }, "the backlog read")
	publish(backlog, backlog+after) // one at a time, mostly written at once
	testutil.WaitFor(t, 30*time.Second, func() bool { return c.Count(isPub) >= backlog+after }, "the later messages read")

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

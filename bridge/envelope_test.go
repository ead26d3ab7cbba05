package bridge_test

import (
	"testing"

	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// socketcluster-client hands the application only the push's data, so on a
// wildcard channel the data is an envelope naming the concrete topic (the
// channel name without bridge.topic_prefix); exact channels get the message
// itself. Live and retained messages look the same.
func TestWildcardChannelEnvelope(t *testing.T) {
	cfg := testConfig()
	cfg.TopicPrefix = "sc/"
	st := startStack(t, cfg, nil)
	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev")
	dev.Pub(t, "sc/sensors/hall", 1, true, `"retained"`)

	c := st.connect(t)
	c.Subscribe("sensors/+")
	c.Subscribe("sensors/room1")
	onChannel := func(ch string) func(scproto.Packet) bool {
		return func(p scproto.Packet) bool { return p.Event == "#publish" && testutil.AsPub(p).Channel == ch }
	}
	if p := c.Next(onChannel("sensors/+"), "retained push on sensors/+"); string(p.Data) != `{"channel":"sensors/+","data":{"topic":"sensors/hall","data":"retained"}}` {
		t.Errorf("retained push on a wildcard channel: %s", p.Data)
	}
	dev.Pub(t, "sc/sensors/room1", 1, false, `{"t":21.5}`)
	if p := c.Next(onChannel("sensors/+"), "push on sensors/+"); string(p.Data) != `{"channel":"sensors/+","data":{"topic":"sensors/room1","data":{"t":21.5}}}` {
		t.Errorf("push on a wildcard channel: %s", p.Data)
	}
	if p := c.Next(onChannel("sensors/room1"), "push on sensors/room1"); string(p.Data) != `{"channel":"sensors/room1","data":{"t":21.5}}` {
		t.Errorf("push on an exact channel: %s", p.Data)
	}
}

package main

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// A SocketCluster client's publish invoke is answered only once the
// message is stored: every publish answered before a kill -9 reaches an
// offline persistent MQTT session after the restart. The invokes are
// pipelined (the bridge answers them from the store's commit, not one at
// a time), and the kill comes right after the last answer.
func TestSCPublishInvokeAnswerSurvivesKillNine(t *testing.T) {
	p := startProc(t)

	keeper := testutil.DialRaw(t, p.MQTT, 4)
	keeper.Connect("durable-keeper", false, 0)
	if codes := keeper.Subscribe(1, "durable/#", 1); len(codes) != 1 || codes[0] != 1 {
		t.Fatalf("SUBACK %v, want QoS 1 granted", codes)
	}
	_ = keeper.Conn.Close() // offline from here: what comes is queued

	sc := testutil.DialSC(t, "ws://"+p.HTTP+"/socketcluster/", nil)
	sc.Handshake(nil)
	const n = 300
	cids := make(map[int64]int, n)
	for i := range n {
		cid := sc.Call("#publish", fmt.Sprintf(`{"channel":"durable/x","data":{"i":%d}}`, i))
		cids[cid] = i
	}
	for cid, i := range cids {
		r := sc.Next(func(pk scproto.Packet) bool { return pk.HasRID && pk.RID == cid }, fmt.Sprintf("answer to publish %d", i))
		if r.Error != nil {
			t.Fatalf("publish %d refused: %s", i, r.Error)
		}
	}
	p.Restart(t, syscall.SIGKILL)

	back := testutil.DialRaw(t, p.MQTT, 4)
	if ack := back.Connect("durable-keeper", false, 0); !ack.SessionPresent {
		t.Fatal("the persistent session did not survive kill -9")
	}
	got := make(map[string]bool, n)
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < n && time.Now().Before(deadline) {
		pk, err := back.TryNext(5 * time.Second)
		if err != nil {
			break
		}
		if pk.FixedHeader.Type != packets.Publish {
			continue
		}
		got[string(pk.Payload)] = true
		if pk.FixedHeader.Qos > 0 {
			back.Ack(packets.Puback, pk.PacketID)
		}
	}
	for i := range n {
		if !got[fmt.Sprintf(`{"i":%d}`, i)] {
			t.Errorf("publish %d was answered before kill -9 but is missing after the restart (%d of %d came back)", i, len(got), n)
			break
		}
	}
}

package broker_test

import (
	"fmt"
	"strconv"
	"testing"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/testutil"
)

// Messages queued while a session was offline get their packet ids when
// they are first sent; after a broker restart the unacknowledged ones are
// sent again with DUP and the same ids (for QoS 2 the id is stored before
// the PUBLISH leaves), and completing them works.
func TestQueuedMessagesKeepPacketIDsAcrossRestart(t *testing.T) {
	for _, qos := range []byte{1, 2} {
		t.Run(fmt.Sprintf("QoS %d", qos), func(t *testing.T) {
			cfg := testutil.BrokerConfig(t)
			b := testutil.StartBroker(t, cfg, nil)
			sub := testutil.DialRaw(t, b.MQTTAddr(), 5)
			sub.Connect("dev", false, 3600)
			sub.Subscribe(1, "q/#", qos)
			sub.Close()
			testutil.WaitGone(t, b, "dev")
			pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
			const n = 5
			for i := range n {
				pub.Pub(t, "q/x", qos, false, strconv.Itoa(i))
			}

			first := testutil.DialRaw(t, b.MQTTAddr(), 5)
			first.Connect("dev", false, 3600)
			pids := map[uint16]bool{}
			var order []uint16
			for i := range n {
				pk, _ := first.Expect(packets.Publish, wait)
				if string(pk.Payload) != strconv.Itoa(i) || pk.FixedHeader.Dup || pk.PacketID == 0 || pids[pk.PacketID] {
					t.Fatalf("first delivery %d: %q dup=%v id %d (ids so far %v)", i, pk.Payload, pk.FixedHeader.Dup, pk.PacketID, order)
				}
				pids[pk.PacketID] = true
				order = append(order, pk.PacketID)
			}
			first.Close() // nothing acknowledged
			testutil.WaitGone(t, b, "dev")
			b = restart(t, b, cfg)

			again := testutil.DialRaw(t, b.MQTTAddr(), 5)
			if ack := again.Connect("dev", false, 3600); !ack.SessionPresent {
				t.Fatal("session lost across the restart")
			}
			for i := range n {
				pk, _ := again.Expect(packets.Publish, wait)
				if string(pk.Payload) != strconv.Itoa(i) || !pk.FixedHeader.Dup || pk.PacketID != order[i] {
					t.Fatalf("after restart %d: %q dup=%v id %d, want DUP and id %d", i, pk.Payload, pk.FixedHeader.Dup, pk.PacketID, order[i])
				}
			}
			for _, id := range order {
				if qos == 1 {
					again.Ack(packets.Puback, id)
					continue
				}
				again.Ack(packets.Pubrec, id)
				if rel, skipped := again.Expect(packets.Pubrel, wait); rel.PacketID != id || len(skipped) != 0 {
					t.Fatalf("PUBREL %d after %d other packets, want PUBREL %d", rel.PacketID, len(skipped), id)
				}
				again.Ack(packets.Pubcomp, id)
			}
			// Completed: a new message is the next thing the client gets.
			pub = testutil.MustConnect5(t, b.MQTTAddr(), "pub2")
			pub.Pub(t, "q/x", qos, false, "next")
			if pk, skipped := again.Expect(packets.Publish, wait); string(pk.Payload) != "next" || len(skipped) != 0 {
				t.Fatalf("next message %q after %d other packets; completed messages must not come again", pk.Payload, len(skipped))
			}
		})
	}
}

// A queue longer than the send window (256 for MQTT 3.1.1) goes out in
// order: at most a window of unacknowledged messages, each with an id no
// other unacknowledged message has, and the rest as acknowledgements free
// the window.
func TestLongQueueDeliveredInOrderWithinWindow(t *testing.T) {
	const n, window = 600, 256
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub := testutil.DialRaw(t, b.MQTTAddr(), 4)
	sub.Connect("long", false, 3600)
	sub.Subscribe(1, "long/q", 1)
	sub.Close()
	testutil.WaitGone(t, b, "long")
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	for i := range n {
		pub.Pub(t, "long/q", 1, false, strconv.Itoa(i))
	}

	sub = testutil.DialRaw(t, b.MQTTAddr(), 4)
	sub.Connect("long", false, 3600)
	unacked := map[uint16]int{}
	next := 0
	receive := func(k int) []uint16 {
		var got []uint16
		for range k {
			pk, _ := sub.Expect(packets.Publish, wait)
			if string(pk.Payload) != strconv.Itoa(next) {
				t.Fatalf("got %q, want %d (in order)", pk.Payload, next)
			}
			if i, dup := unacked[pk.PacketID]; dup {
				t.Fatalf("message %d sent with id %d, which message %d holds unacknowledged", next, pk.PacketID, i)
			}
			unacked[pk.PacketID] = next
			got = append(got, pk.PacketID)
			next++
		}
		return got
	}
	ids := receive(window)
	// The window is full: a PING answered before any further PUBLISH shows
	// that the broker holds the rest back.
	if _, err := sub.Conn.Write([]byte{packets.Pingreq << 4, 0}); err != nil {
		t.Fatal(err)
	}
	if _, skipped := sub.Expect(packets.Pingresp, wait); len(skipped) != 0 {
		t.Fatalf("%d packets beyond the send window of %d", len(skipped), window)
	}
	for len(ids) > 0 || next < n {
		if len(ids) == 0 {
			ids = receive(1)
		}
		sub.Ack(packets.Puback, ids[0])
		delete(unacked, ids[0])
		ids = ids[1:]
		if next < n {
			ids = append(ids, receive(1)...)
		}
	}
	if len(unacked) != 0 {
		t.Fatalf("%d messages left unacknowledged", len(unacked))
	}
}

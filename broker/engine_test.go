package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
)

// Tests of the guarantees sockmq's own session engine keeps (see README,
// "What the engine guarantees"). They use raw clients so that flags and
// QoS 2 steps are visible.

const wait = 5 * time.Second

func stop(t *testing.T, b *broker.Server) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// A QoS 1/2 message queued while a session was offline goes out with DUP=0
// the first time [MQTT-3.3.1-3], and with DUP=1 (same packet id) when it
// is sent again after a reconnect.
func TestQueuedMessageFirstDeliveryIsNotDup(t *testing.T) {
	for _, v := range []byte{4, 5} {
		t.Run("MQTT "+map[byte]string{4: "3.1.1", 5: "5"}[v], func(t *testing.T) {
			b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
			sub := testutil.DialRaw(t, b.MQTTAddr(), v)
			sub.Connect("dev", false, 3600)
			sub.Subscribe(1, "q/#", 1)
			sub.Close()
			testutil.WaitGone(t, b, "dev")
			pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
			for _, p := range []string{"a", "b", "c"} {
				pub.Pub(t, "q/1", 1, false, p)
			}
			first := testutil.DialRaw(t, b.MQTTAddr(), v)
			if ack := first.Connect("dev", false, 3600); !ack.SessionPresent {
				t.Fatal("session not present")
			}
			var pids []uint16
			for _, want := range []string{"a", "b", "c"} {
				pk, _ := first.Expect(packets.Publish, wait)
				if string(pk.Payload) != want || pk.FixedHeader.Dup {
					t.Fatalf("first delivery of %q: got %q dup=%v", want, pk.Payload, pk.FixedHeader.Dup)
				}
				pids = append(pids, pk.PacketID)
			}
			first.Close() // without acknowledging
			testutil.WaitGone(t, b, "dev")
			again := testutil.DialRaw(t, b.MQTTAddr(), v)
			again.Connect("dev", false, 3600)
			for i, want := range []string{"a", "b", "c"} {
				pk, _ := again.Expect(packets.Publish, wait)
				if string(pk.Payload) != want || !pk.FixedHeader.Dup || pk.PacketID != pids[i] {
					t.Fatalf("redelivery of %q: got %q dup=%v pid %d (first %d)", want, pk.Payload, pk.FixedHeader.Dup, pk.PacketID, pids[i])
				}
				again.Ack(packets.Puback, pk.PacketID)
			}
		})
	}
}

// restart shuts b down and starts a broker on the same data directory.
func restart(t *testing.T, b *broker.Server, cfg broker.Config) *broker.Server {
	t.Helper()
	stop(t, b)
	return testutil.StartBroker(t, cfg, nil)
}

// Once PUBREL was sent for an outgoing QoS 2 message, the broker never
// sends its PUBLISH again, not even after a restart: the session resumes
// with PUBREL [MQTT-4.3.3-7].
func TestOutgoingQoS2ResumesWithPubrelAfterRestart(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b := testutil.StartBroker(t, cfg, nil)
	sub := testutil.DialRaw(t, b.MQTTAddr(), 5)
	sub.Connect("sub", false, 3600)
	sub.Subscribe(1, "q2", 2)
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	pub.Pub(t, "q2", 2, false, "x")
	pk, _ := sub.Expect(packets.Publish, wait)
	sub.Ack(packets.Pubrec, pk.PacketID)
	rel, _ := sub.Expect(packets.Pubrel, wait)
	if rel.PacketID != pk.PacketID {
		t.Fatalf("PUBREL for %d, want %d", rel.PacketID, pk.PacketID)
	}
	sub.Close() // without PUBCOMP
	testutil.WaitGone(t, b, "sub")
	b = restart(t, b, cfg)

	sub = testutil.DialRaw(t, b.MQTTAddr(), 5)
	if ack := sub.Connect("sub", false, 3600); !ack.SessionPresent {
		t.Fatal("session lost across the restart")
	}
	next := sub.Next(wait)
	if next.FixedHeader.Type != packets.Pubrel || next.PacketID != pk.PacketID {
		t.Fatalf("after restart the broker sent %s (id %d), want PUBREL %d", packets.PacketNames[next.FixedHeader.Type], next.PacketID, pk.PacketID)
	}
	sub.Ack(packets.Pubcomp, pk.PacketID)
	pub = testutil.MustConnect5(t, b.MQTTAddr(), "pub2")
	pub.Pub(t, "q2", 2, false, "y")
	got, skipped := sub.Expect(packets.Publish, wait)
	if string(got.Payload) != "y" || len(skipped) != 0 {
		t.Fatalf("next message %q (skipped %d packets); the released message must not come again", got.Payload, len(skipped))
	}
}

// An inbound QoS 2 message whose PUBREC was sent is not delivered again
// when the publisher resends it (DUP) after a broker restart
// [MQTT-4.3.3-9].
func TestIncomingQoS2NotDeliveredTwiceAcrossRestart(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b := testutil.StartBroker(t, cfg, nil)
	watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watcher")
	watcher.Sub(t, "once", 2)
	pub := testutil.DialRaw(t, b.MQTTAddr(), 5)
	pub.Connect("pub", false, 3600)
	pub.Publish(7, "once", 2, false, false, "exactly")
	rec, _ := pub.Expect(packets.Pubrec, wait)
	if rec.PacketID != 7 {
		t.Fatalf("PUBREC %d", rec.PacketID)
	}
	if m := watcher.Next(t); string(m.Payload) != "exactly" {
		t.Fatalf("got %q", m.Payload)
	}
	pub.Close() // before PUBREL
	testutil.WaitGone(t, b, "pub")
	b = restart(t, b, cfg)

	late := testutil.MustConnect5(t, b.MQTTAddr(), "late")
	late.Sub(t, "once", 2)
	pub = testutil.DialRaw(t, b.MQTTAddr(), 5)
	if ack := pub.Connect("pub", false, 3600); !ack.SessionPresent {
		t.Fatal("publisher's session lost across the restart")
	}
	pub.Publish(7, "once", 2, false, true, "exactly") // the resend
	if rec, _ := pub.Expect(packets.Pubrec, wait); rec.PacketID != 7 || rec.ReasonCode != 0 {
		t.Fatalf("resend answered with PUBREC %d reason 0x%x", rec.PacketID, rec.ReasonCode)
	}
	pub.Ack(packets.Pubrel, 7)
	if comp, _ := pub.Expect(packets.Pubcomp, wait); comp.PacketID != 7 || comp.ReasonCode != 0 {
		t.Fatalf("PUBCOMP %d reason 0x%x", comp.PacketID, comp.ReasonCode)
	}
	pub.Publish(8, "once", 1, false, false, "sentinel")
	if m := late.Next(t); string(m.Payload) != "sentinel" {
		t.Fatalf("the resent QoS 2 message was delivered again: %q", m.Payload)
	}
}

// A delayed will is published as it was given: no message expiry it never
// had, and a QoS 2 subscriber completes it with PUBREL success.
func TestDelayedWillHasNoInventedExpiry(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub := testutil.DialRaw(t, b.MQTTAddr(), 5)
	sub.Connect("watch", true, 0)
	sub.Subscribe(1, "wills/#", 2)
	exp := uint32(60)
	delay := uint32(1)
	dev, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "dev", CleanStart: true,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &exp},
		WillMessage:    &paho.WillMessage{Topic: "wills/dev", Payload: []byte("gone"), QoS: 2},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
	if err != nil {
		t.Fatal(err)
	}
	dev.Drop()
	pk, _ := sub.Expect(packets.Publish, 10*time.Second)
	if string(pk.Payload) != "gone" || pk.FixedHeader.Qos != 2 {
		t.Fatalf("will %q qos %d", pk.Payload, pk.FixedHeader.Qos)
	}
	if pk.Properties.MessageExpiryInterval != 0 {
		t.Fatalf("will carries a message expiry of %ds it never had", pk.Properties.MessageExpiryInterval)
	}
	sub.Ack(packets.Pubrec, pk.PacketID)
	rel, _ := sub.Expect(packets.Pubrel, wait)
	if rel.ReasonCode != 0 {
		t.Fatalf("PUBREL reason 0x%x, want success", rel.ReasonCode)
	}
	sub.Ack(packets.Pubcomp, pk.PacketID)
}

// Topics starting with '$' (presence documents included) never match
// filters whose first level is a wildcard, live or retained
// [MQTT-4.7.2-1].
func TestDollarTopicsNotMatchedByLeadingWildcards(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	for _, topic := range []string{"$presence/clients/x", "$SYS/broker/x"} {
		if err := b.Publish(broker.Message{Topic: topic, Payload: []byte("doc"), Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	c := testutil.MustConnect5(t, b.MQTTAddr(), "wild")
	for _, f := range []string{"#", "+/clients/+", "+/+/+", "+/#"} {
		c.Sub(t, f, 1)
	}
	if err := b.Publish(broker.Message{Topic: "$presence/clients/y", Payload: []byte("live")}); err != nil {
		t.Fatal(err)
	}
	c.Pub(t, "sentinel/x/y", 1, false, "end")
	for {
		m := c.Next(t)
		if strings.HasPrefix(m.Topic, "$") {
			t.Fatalf("a leading-wildcard filter received %s", m.Topic)
		}
		if m.Topic == "sentinel/x/y" {
			break
		}
	}
	// Naming the $ level explicitly works.
	d := testutil.MustConnect5(t, b.MQTTAddr(), "explicit")
	d.Sub(t, "$presence/#", 1)
	if m := d.Next(t); m.Topic != "$presence/clients/x" || !m.Retain {
		t.Fatalf("explicit $presence/# got %s retain %v", m.Topic, m.Retain)
	}
}

// A store written by sockmq before its own engine (schema 1, mochi's
// records) is migrated at start: sessions resume with their queued
// messages in order, and retained messages are kept.
func TestSchema1StoreMigrated(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	data, err := os.ReadFile("../internal/store/testdata/schema1.db")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Persistence.DataDir, "sockmq.db"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	b := testutil.StartBroker(t, cfg, nil)
	for _, tc := range []struct {
		id      string
		version byte
		want    []string
	}{{"dev3", 4, []string{"one", "two", "three"}}, {"dev5", 5, []string{"one", "two", "three", "exactly-once"}}} {
		c := testutil.DialRaw(t, b.MQTTAddr(), tc.version)
		if ack := c.Connect(tc.id, false, 3600); !ack.SessionPresent {
			t.Fatalf("%s: migrated session not present", tc.id)
		}
		for _, w := range tc.want {
			pk, _ := c.Expect(packets.Publish, wait)
			if string(pk.Payload) != w || pk.FixedHeader.Dup {
				t.Fatalf("%s: got %q dup=%v, want %q dup=false", tc.id, pk.Payload, pk.FixedHeader.Dup, w)
			}
			if pk.FixedHeader.Qos == 2 {
				c.Ack(packets.Pubrec, pk.PacketID)
				c.Expect(packets.Pubrel, wait)
				c.Ack(packets.Pubcomp, pk.PacketID)
			} else {
				c.Ack(packets.Puback, pk.PacketID)
			}
		}
	}
	r := testutil.MustConnect5(t, b.MQTTAddr(), "reader")
	r.Sub(t, "retained/#", 1)
	if m := r.Next(t); m.Topic != "retained/x" || string(m.Payload) != "kept" || !m.Retain {
		t.Fatalf("retained after migration: %s %q retain=%v", m.Topic, m.Payload, m.Retain)
	}
}

// Shutdown stops every goroutine and timer the engine started before it
// returns (the store is closed last).
func TestShutdownLeavesNoEngineGoroutines(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub := testutil.MustConnect5(t, b.MQTTAddr(), "sub")
	sub.Sub(t, "t/#", 2)
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	exp := uint32(30)
	delay := uint32(20)
	_, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "willing", CleanStart: true, KeepAlive: 30,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &exp},
		WillMessage:    &paho.WillMessage{Topic: "t/will", Payload: []byte("w")},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay}})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		pub.Pub(t, "t/x", byte(i%3), i%5 == 0, "m")
	}
	stop(t, b)
	testutil.WaitFor(t, 5*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		return !strings.Contains(stacks, "sockmq/sockmq/broker.(") && !strings.Contains(stacks, "sockmq/internal/store.(")
	}, "every broker and store goroutine to end after Shutdown")
}

// The MQTT 5 properties a publisher gives a message reach its subscribers
// unchanged (request/response needs the response topic and correlation
// data).
func TestPublishPropertiesReachSubscribers(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub := testutil.DialRaw(t, b.MQTTAddr(), 5)
	sub.Connect("sub", true, 0)
	sub.Subscribe(1, "req/#", 1)
	pub := testutil.DialRaw(t, b.MQTTAddr(), 5)
	pub.Connect("pub", true, 0)
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, PacketID: 3, TopicName: "req/1", Payload: []byte("question")}
	pk.Mods.AllowResponseInfo = true // mochi encodes the response topic only then
	pk.Properties.ResponseTopic = "resp/1"
	pk.Properties.CorrelationData = []byte("334")
	pk.Properties.ContentType = "text/plain"
	pk.Properties.PayloadFormat, pk.Properties.PayloadFormatFlag = 1, true
	pk.Properties.User = []packets.UserProperty{{Key: "k", Val: "v"}}
	pub.Send(pk)
	got, _ := sub.Expect(packets.Publish, wait)
	p := got.Properties
	if p.ResponseTopic != "resp/1" || string(p.CorrelationData) != "334" || p.ContentType != "text/plain" ||
		!p.PayloadFormatFlag || p.PayloadFormat != 1 || len(p.User) != 1 || p.User[0].Val != "v" {
		t.Fatalf("properties delivered: %+v", p)
	}
}

// A client that has more unanswered QoS 1/2 publishes than the Receive
// Maximum the broker announced is disconnected with 0x93 [MQTT-3.3.4-9].
func TestReceiveMaximumEnforced(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	c := testutil.DialRaw(t, b.MQTTAddr(), 5)
	ack := c.Connect("greedy", true, 0)
	max := int(ack.Properties.ReceiveMaximum)
	if max == 0 {
		t.Fatal("CONNACK announces no Receive Maximum")
	}
	for i := 1; i <= max+1; i++ { // QoS 2 publishes never completed with PUBREL
		c.Publish(uint16(i), "flow", 2, false, false, "m")
	}
	pk, _ := c.Expect(packets.Disconnect, wait)
	if pk.ReasonCode != packets.ErrReceiveMaximum.Code {
		t.Fatalf("DISCONNECT reason 0x%x, want 0x93", pk.ReasonCode)
	}
}

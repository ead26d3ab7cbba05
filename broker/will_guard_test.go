package broker_test

import (
	"testing"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/testutil"
)

// A will is published even when the server ends the connection before
// mochi's read loop started (mochi would discard it), except after a clean
// DISCONNECT and for a delayed will whose session is taken over.
func TestWillOfConnectionEndedBeforeItsReadLoop(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watcher")
	watcher.Sub(t, "wills/#", 1)
	will := func(topic string, delay uint32) mqtt.Will {
		return mqtt.Will{Flag: 1, TopicName: topic, Payload: []byte("bye"), Qos: 1, WillDelayInterval: delay}
	}
	b.EndBeforeReadLoop("taken", will("wills/taken", 0), packets.ErrSessionTakenOver)
	if m := watcher.Next(t); m.Topic != "wills/taken" || string(m.Payload) != "bye" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	b.EndBeforeReadLoop("kicked", will("wills/kicked", 0), packets.ErrNotAuthorized)
	if m := watcher.Next(t); m.Topic != "wills/kicked" {
		t.Fatalf("got %s", m.Topic)
	}
	b.EndBeforeReadLoop("clean", will("wills/clean", 0), packets.CodeDisconnect)
	b.EndBeforeReadLoop("delayed", will("wills/delayed", 30), packets.ErrSessionTakenOver)
	testutil.MustConnect5(t, b.MQTTAddr(), "s").Pub(t, "wills/sentinel", 1, false, "sentinel")
	if m := watcher.Next(t); m.Topic != "wills/sentinel" {
		t.Fatalf("got %s %q: no will after a clean DISCONNECT, none for a delayed will on takeover", m.Topic, m.Payload)
	}
}

package broker_test

import (
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
)

// MQTT 5 message expiry still works without mochi's scans: an expired
// retained message is no longer given to new subscribers, and an expired
// queued message is not delivered to a session that comes back later.
func TestMessageExpiry(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	expiry := uint32(3600)
	persistent := func() *testutil.Client5 {
		c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "away", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	away := persistent()
	away.Sub(t, "q/#", 1)
	if err := away.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}

	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	short := uint32(1)
	publish := func(topic string, retain bool, exp *uint32, payload string) {
		t.Helper()
		ctx := t.Context()
		if _, err := pub.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: retain, Payload: []byte(payload),
			Properties: &paho.PublishProperties{MessageExpiry: exp}}); err != nil {
			t.Fatal(err)
		}
	}
	publish("r/short", true, &short, "expires")
	publish("r/long", true, nil, "stays")
	publish("q/short", false, &short, "expires")
	published := time.Now()

	// Expiry is checked once a second with one-second resolution: by 2.5s
	// the 1s messages are gone.
	testutil.WaitFor(t, 5*time.Second, func() bool { return time.Since(published) > 2500*time.Millisecond }, "the messages to expire")
	publish("q/long", false, nil, "delivered")

	late := testutil.MustConnect5(t, b.MQTTAddr(), "late")
	late.Sub(t, "r/#", 1)
	if m := late.Next(t); m.Topic != "r/long" {
		t.Fatalf("late subscriber got %s %q; the expired retained message must be gone", m.Topic, m.Payload)
	}
	back := persistent()
	if m := back.Next(t); m.Topic != "q/long" {
		t.Fatalf("returning session got %s %q; the expired queued message must not be delivered", m.Topic, m.Payload)
	}
}

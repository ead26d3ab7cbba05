package broker_test

import (
	"context"

	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
)

// rawConnect sends a hand-made MQTT 3.1.1 CONNECT with a will and returns
// the connection after the CONNACK; the test can then let it go silent
// (keepalive expiry) or drop it.
func rawConnect(t *testing.T, addr, id string, keepalive uint16, willTopic, willPayload string, qos byte, retain bool) interface{ Close() error } {
	t.Helper()
	c := testutil.Dial(t, addr)
	flags := byte(0x02 | 0x04 | qos<<3) // clean session, will flag, will qos
	if retain {
		flags |= 0x20
	}
	var body []byte
	body = append(body, 0, 4, 'M', 'Q', 'T', 'T', 4, flags, byte(keepalive>>8), byte(keepalive))
	for _, s := range []string{id, willTopic, willPayload} {
		body = append(body, byte(len(s)>>8), byte(len(s)))
		body = append(body, s...)
	}
	pkt := append([]byte{0x10, byte(len(body))}, body...)
	if _, err := c.Write(pkt); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("raw connect %s: %x %v", id, ack, err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return c
}

// The will matrix: QoS x retain x how the connection ended.
func TestWillMatrix(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	type ending int
	const (
		clean ending = iota
		drop
		keepalive
		takeover
	)
	names := map[ending]string{clean: "clean-disconnect", drop: "tcp-drop", keepalive: "keepalive-expiry", takeover: "takeover"}
	for _, how := range []ending{clean, drop, keepalive, takeover} {
		for qos := byte(0); qos <= 2; qos++ {
			for _, retain := range []bool{false, true} {
				name := fmt.Sprintf("%s/qos%d/retain=%v", names[how], qos, retain)
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					id := fmt.Sprintf("w-%d-%d-%v", how, qos, retain)
					topic := "wills/" + id
					watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watch-"+id)
					watcher.Sub(t, topic, 2)
					start := time.Now()
					switch how {
					case keepalive:
						c := rawConnect(t, b.MQTTAddr(), id, 1, topic, "bye", qos, retain)
						defer c.Close()
					default:
						c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{
							ClientID: id, CleanStart: true,
							WillMessage: &paho.WillMessage{Topic: topic, Payload: []byte("bye"), QoS: qos, Retain: retain},
						})
						if err != nil {
							t.Fatal(err)
						}
						switch how {
						case clean:
							if err := c.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
								t.Fatal(err)
							}
						case drop:
							c.Drop()
						case takeover:
							testutil.MustConnect5(t, b.MQTTAddr(), id)
						}
					}
					// A sentinel published after the ending proves absence of
					// a will that must not come (deliveries keep their order).
					if how == clean {
						testutil.WaitGone(t, b, id)
						testutil.MustConnect5(t, b.MQTTAddr(), "s-"+id).Pub(t, topic, 2, false, "sentinel")
						if m := watcher.Next(t); string(m.Payload) != "sentinel" {
							t.Fatalf("will sent after a clean DISCONNECT: %q", m.Payload)
						}
						return
					}
					m := watcher.Next(t)
					if string(m.Payload) != "bye" || m.QoS != qos {
						t.Fatalf("will: %q qos %d, want \"bye\" qos %d", m.Payload, m.QoS, qos)
					}
					if how == keepalive {
						if d := time.Since(start); d > 3*time.Second {
							t.Errorf("keepalive 1s: death detected after %v, want within 1.5 x keepalive (+ margin)", d)
						}
					}
					late := testutil.MustConnect5(t, b.MQTTAddr(), "late-"+id)
					late.Sub(t, topic, 2)
					late.Pub(t, topic+"/x", 0, false, "")
					testutil.MustConnect5(t, b.MQTTAddr(), "s2-"+id).Pub(t, topic, 1, false, "sentinel")
					got := late.Next(t)
					if retain && (string(got.Payload) != "bye" || !got.Retain) {
						t.Fatalf("retained will not kept: late subscriber got %q retain=%v", got.Payload, got.Retain)
					}
					if !retain && string(got.Payload) != "sentinel" {
						t.Fatalf("non-retained will was retained: late subscriber got %q", got.Payload)
					}
				})
			}
		}
	}
}

// MQTT 5 will delay: sent after the delay when the client stays away,
// never when it comes back in time.
func TestWillDelay(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	delay, expiry := uint32(1), uint32(60)
	connect := func(id string) *testutil.Client5 {
		c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{
			ClientID: id, CleanStart: false,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage:    &paho.WillMessage{Topic: "delayed/" + id, Payload: []byte("late bye"), QoS: 1},
			WillProperties: &paho.WillProperties{WillDelayInterval: &delay},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watcher")
	watcher.Sub(t, "delayed/#", 1)

	t.Run("stays away", func(t *testing.T) {
		c := connect("away")
		c.Drop()
		dropped := time.Now()
		m := watcher.Next(t)
		if m.Topic != "delayed/away" {
			t.Fatalf("got %s", m.Topic)
		}
		if d := time.Since(dropped); d < 900*time.Millisecond {
			t.Fatalf("delayed will sent after %v, before its 1s delay", d)
		}
	})
	t.Run("capped by the session expiry", func(t *testing.T) {
		// Will delay 60s, session expiry 1s: the session ends first, and
		// with it the wait (MQTT 5 3.1.3.2.2).
		long, short := uint32(60), uint32(1)
		c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{
			ClientID: "capped", CleanStart: true,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &short},
			WillMessage:    &paho.WillMessage{Topic: "delayed/capped", Payload: []byte("capped"), QoS: 1},
			WillProperties: &paho.WillProperties{WillDelayInterval: &long},
		})
		if err != nil {
			t.Fatal(err)
		}
		c.Drop()
		dropped := time.Now()
		if m := watcher.Next(t); m.Topic != "delayed/capped" {
			t.Fatalf("got %s", m.Topic)
		}
		if d := time.Since(dropped); d > 5*time.Second {
			t.Fatalf("will sent after %v: the 60s delay was not capped by the 1s session expiry", d)
		}
	})
	t.Run("comes back in time", func(t *testing.T) {
		c := connect("back")
		c.Drop()
		dropped := time.Now()
		connect("back") // reconnects within the delay: the session continues
		// The will would be due 1s after the drop; mochi checks every second.
		// Wait past that, then prove nothing came with a sentinel.
		testutil.WaitFor(t, 5*time.Second, func() bool { return time.Since(dropped) > 2500*time.Millisecond }, "will delay window to pass")
		testutil.MustConnect5(t, b.MQTTAddr(), "sentinel").Pub(t, "delayed/back", 1, false, "sentinel")
		if m := watcher.Next(t); string(m.Payload) != "sentinel" {
			t.Fatalf("will sent although the client reconnected within the delay: %q", m.Payload)
		}
	})
}

// A delayed will pending when the broker stops is sent after a restart when
// its delay runs out.
func TestDelayedWillSurvivesRestart(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b1 := testutil.StartBroker(t, cfg, nil) // Shutdown is idempotent: the test may stop it first
	delay, expiry := uint32(2), uint32(300)
	c, _, err := testutil.Connect5(t, testutil.Dial(t, b1.MQTTAddr()), &paho.Connect{
		ClientID: "sensor-7", CleanStart: false,
		Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		WillMessage:    &paho.WillMessage{Topic: "status/sensor-7", Payload: []byte("offline"), QoS: 1, Retain: true},
		WillProperties: &paho.WillProperties{WillDelayInterval: &delay},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Drop()
	dropped := time.Now()
	// Stop before the delay runs out (the session is stored as disconnected).
	testutil.WaitFor(t, 5*time.Second, func() bool { return b1.SessionCount() == 0 }, "the drop to be noticed")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b1.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if time.Since(dropped) >= 2*time.Second {
		t.Skip("machine too slow to stop within the will delay")
	}
	b2 := testutil.StartBroker(t, cfg, nil)
	watcher := testutil.MustConnect5(t, b2.MQTTAddr(), "watcher")
	watcher.Sub(t, "status/#", 1)
	m := watcher.Next(t)
	if m.Topic != "status/sensor-7" || string(m.Payload) != "offline" {
		t.Fatalf("got %s %q", m.Topic, m.Payload)
	}
	if d := time.Since(dropped); d < 1900*time.Millisecond {
		t.Fatalf("will sent %v after the drop, before its delay", d)
	}
	// Retained, as the will asked.
	late := testutil.MustConnect5(t, b2.MQTTAddr(), "late")
	late.Sub(t, "status/#", 1)
	if m := late.Next(t); !m.Retain || string(m.Payload) != "offline" {
		t.Fatalf("restored will not retained: %+v", m)
	}
}

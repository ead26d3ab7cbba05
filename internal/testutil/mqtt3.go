package testutil

import (
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
)

// Client3 is a real MQTT 3.1.1 client (paho.mqtt.golang).
type Client3 struct {
	pahov3.Client
	Msgs chan pahov3.Message
}

// Connect3 connects an MQTT 3.1.1 client to tcp://addr. It returns the
// connect error (for refused connections) instead of failing.
func Connect3(t testing.TB, addr string, configure func(*pahov3.ClientOptions)) (*Client3, error) {
	t.Helper()
	c := &Client3{Msgs: make(chan pahov3.Message, 1000)}
	o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetProtocolVersion(4).
		SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second).
		SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) { c.Msgs <- m })
	if configure != nil {
		configure(o)
	}
	c.Client = pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatalf("mqtt3 connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c, nil
}

// Sub subscribes and returns the granted QoS (0x80 for a refusal).
func (c *Client3) Sub(t testing.TB, filter string, qos byte) byte {
	t.Helper()
	tok := c.Subscribe(filter, qos, nil)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt3 subscribe %s: %v", filter, tok.Error())
	}
	granted := tok.(*pahov3.SubscribeToken).Result()[filter]
	// Barrier: see Client5.barrier.
	if u := c.Unsubscribe("testutil/barrier"); !u.WaitTimeout(5*time.Second) || u.Error() != nil {
		t.Fatalf("mqtt3 barrier: %v", u.Error())
	}
	return granted
}

// Pub publishes and waits for completion.
func (c *Client3) Pub(t testing.TB, topic string, qos byte, retain bool, payload string) {
	t.Helper()
	tok := c.Publish(topic, qos, retain, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt3 publish %s: %v", topic, tok.Error())
	}
}

// Next waits for the next message.
func (c *Client3) Next(t testing.TB) pahov3.Message {
	t.Helper()
	select {
	case m := <-c.Msgs:
		return m
	case <-time.After(MessageWait):
		t.Fatalf("mqtt3: no message within %v", MessageWait)
		return nil
	}
}

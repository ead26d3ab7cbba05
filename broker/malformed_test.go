package broker_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// connect311 is a valid MQTT 3.1.1 CONNECT for client id "m".
var connect311 = []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'm'}

// Malformed and hostile input ends that one connection cleanly; the broker
// keeps serving everyone else.
func TestMalformedPacketsCloseOnlyThatConnection(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	healthy := testutil.MustConnect5(t, b.MQTTAddr(), "healthy")
	healthy.Sub(t, "ok/#", 1)

	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"garbage first byte", []byte{0xff, 0xff, 0xff}},
		{"PUBLISH before CONNECT", []byte{0x30, 0x05, 0, 1, 'a', 'h', 'i'}},
		{"PUBACK before CONNECT", []byte{0x40, 0x02, 0, 1}},
		{"CONNACK sent to the broker", []byte{0x20, 0x02, 0, 0}},
		{"remaining length of five bytes", []byte{0x10, 0xff, 0xff, 0xff, 0xff, 0x7f}},
		{"wrong protocol name", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'X', 'X', 4, 2, 0, 30, 0, 1, 'm'}},
		{"unsupported protocol level", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 9, 2, 0, 30, 0, 1, 'm'}},
		{"CONNECT length beyond packet", []byte{0x10, 0x0d, 0, 40, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'm'}},
		{"reserved connect flag", []byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 3, 0, 30, 0, 1, 'm'}},
		{"second CONNECT", cat(connect311, connect311)},
		{"topic with invalid UTF-8", cat(connect311, []byte{0x30, 0x05, 0, 2, 0xc3, 0x28, 'x'})},
		{"topic with NUL", cat(connect311, []byte{0x30, 0x05, 0, 2, 'a', 0, 'x'})},
		{"wildcard in a published topic", cat(connect311, []byte{0x30, 0x05, 0, 2, 'a', '#', 'x'})},
		{"zero-length topic without alias", cat(connect311, []byte{0x30, 0x03, 0, 0, 'x'})},
		{"QoS 3 publish", cat(connect311, []byte{0x36, 0x06, 0, 1, 'a', 0, 1, 'x'})},
		{"SUBSCRIBE without filters", cat(connect311, []byte{0x82, 0x02, 0, 1})},
		{"SUBSCRIBE with wrong fixed flags", cat(connect311, []byte{0x80, 0x06, 0, 1, 0, 1, 'a', 0})},
		{"truncated packet then close", cat(connect311, []byte{0x30, 0x7f, 0, 1})},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := testutil.Dial(t, b.MQTTAddr())
			defer conn.Close()
			_, _ = conn.Write(c.data)
			if c.name == "truncated packet then close" {
				conn.(*net.TCPConn).CloseWrite()
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, err := io.Copy(io.Discard, conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				t.Fatal("connection left open after malformed input")
			}
		})
	}
	// Everyone else was served throughout.
	testutil.MustConnect5(t, b.MQTTAddr(), "after").Pub(t, "ok/1", 1, false, "still serving")
	if m := healthy.Next(t); string(m.Payload) != "still serving" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestSubscriptionLimit(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxSubscriptions = 3
	b := testutil.StartBroker(t, cfg, nil)
	c := testutil.MustConnect5(t, b.MQTTAddr(), "greedy")
	for i, f := range []string{"a", "b", "c"} {
		if rc := c.Sub(t, f, 1); rc[0] != 1 {
			t.Fatalf("subscription %d refused below the limit: 0x%x", i, rc[0])
		}
	}
	if rc := c.Sub(t, "d", 1); rc[0] != 0x97 {
		t.Fatalf("fourth subscription over a limit of 3: 0x%x, want 0x97 (quota exceeded)", rc[0])
	}
	if rc := c.Sub(t, "a", 0); rc[0] != 0 {
		t.Fatalf("re-subscribing an existing filter refused: 0x%x", rc[0])
	}
	c.Pub(t, "d", 1, false, "not subscribed")
	c.Pub(t, "a", 1, false, "subscribed")
	if m := c.Next(t); m.Topic != "a" {
		t.Fatalf("got %s", m.Topic)
	}
}

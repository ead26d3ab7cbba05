package broker_test

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// FuzzPacketsAfterConnect sends arbitrary bytes after a valid CONNECT, on a
// real connection to one broker, and checks after each input that the
// broker still serves a healthy client: no input may crash it or disturb
// others. `go test` runs the seeds; `go test -fuzz FuzzPacketsAfterConnect`
// explores.
func FuzzPacketsAfterConnect(f *testing.F) {
	for _, seed := range [][]byte{
		{0x30, 0x05, 0, 1, 'a', 'h', 'i'},                              // QoS 0 publish
		{0x32, 0x07, 0, 1, 'a', 0, 1, 'h', 'i'},                        // QoS 1 publish
		{0x82, 0x06, 0, 1, 0, 1, '#', 1},                               // subscribe #
		{0xa2, 0x05, 0, 1, 0, 1, 'a'},                                  // unsubscribe
		{0x62, 0x02, 0, 9},                                             // PUBREL for an unknown id
		{0x30, 0x05, 0, 2, 0xc3, 0x28, 'x'},                            // invalid UTF-8 topic
		{0x36, 0x06, 0, 1, 'a', 0, 1, 'x'},                             // QoS 3
		{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, 'm'}, // second CONNECT
		{0xe0, 0x00}, // DISCONNECT
		{0xff, 0xff, 0xff, 0xff, 0xff},
	} {
		f.Add(seed)
	}
	b := testutil.StartBroker(f, testutil.BrokerConfig(f), nil)
	healthy := testutil.MustConnect5(f, b.MQTTAddr(), "healthy")
	healthy.Sub(f, "fuzz/ok", 0)
	prober := testutil.MustConnect5(f, b.MQTTAddr(), "prober")
	f.Fuzz(func(t *testing.T, data []byte) {
		conn, err := net.DialTimeout("tcp", b.MQTTAddr(), 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = conn.Write([]byte{0x10, 0x0e, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 2, 'f', 'z'})
		_, _ = conn.Write(data)
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		_, _ = io.Copy(io.Discard, conn) // whatever the broker answers, or its close
		prober.Pub(t, "fuzz/ok", 0, false, "alive")
		select {
		case m := <-healthy.Msgs:
			if string(m.Payload) != "alive" {
				t.Fatalf("healthy client got %q", m.Payload)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("broker stopped serving after input %x", data)
		}
	})
}

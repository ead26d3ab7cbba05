package broker_test

import (
	"bufio"
	"io"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// rawPacket reads one MQTT packet: its first byte and its body.
func rawPacket(t *testing.T, r *bufio.Reader) (byte, []byte) {
	t.Helper()
	first, err := r.ReadByte()
	if err != nil {
		t.Fatal(err)
	}
	n, shift := 0, 0
	for {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatal(err)
		}
		n |= int(b&0x7f) << shift
		if b&0x80 == 0 {
			break
		}
		shift += 7
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		t.Fatal(err)
	}
	return first, body
}

func mqtt5Subscribe(pid uint16, filter string) []byte {
	body := []byte{byte(pid >> 8), byte(pid), 0, byte(len(filter) >> 8), byte(len(filter))}
	body = append(append(body, filter...), 0x01)
	return append([]byte{0x82, byte(len(body))}, body...)
}

// A client may reuse a packet id for SUBSCRIBE/UNSUBSCRIBE while a message
// the broker sent it under the same id is unacknowledged: the two
// directions are separate (mochi refused such packets with 0x91).
func TestPacketIDsOfBothDirectionsAreSeparate(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	testutil.MustConnect5(t, b.MQTTAddr(), "pub").Pub(t, "r/1", 1, true, "kept")

	conn := testutil.Dial(t, b.MQTTAddr())
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(conn)
	id := "raw5"
	connect := append([]byte{0x10, byte(13 + len(id)), 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 30, 0, 0, byte(len(id))}, id...)
	write := func(p []byte) {
		if _, err := conn.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	write(connect)
	if first, body := rawPacket(t, r); first != 0x20 || body[1] != 0 {
		t.Fatalf("CONNACK %x %x", first, body)
	}
	write(mqtt5Subscribe(1, "r/#"))
	var outID uint16
	for got := 0; got < 2; got++ { // SUBACK and the retained PUBLISH, which we leave unacknowledged
		first, body := rawPacket(t, r)
		switch first >> 4 {
		case 9:
		case 3:
			tl := int(body[0])<<8 | int(body[1])
			outID = uint16(body[2+tl])<<8 | uint16(body[3+tl])
		default:
			t.Fatalf("unexpected packet %x", first)
		}
	}
	if outID != 1 {
		t.Skipf("the broker sent the retained message as id %d; this test needs a collision on id 1", outID)
	}
	write(mqtt5Subscribe(1, "other/#"))
	first, body := rawPacket(t, r)
	if first != 0x90 || body[0] != 0 || body[1] != 1 || body[len(body)-1] != 0x01 {
		t.Fatalf("SUBACK %x % x: want packet id 1 and QoS 1 granted (0x91 = mochi's id mix-up)", first, body)
	}
	unsub := []byte{0, 1, 0, 0, 7, 'o', 't', 'h', 'e', 'r', '/', '#'}
	write(append([]byte{0xa2, byte(len(unsub))}, unsub...))
	first, body = rawPacket(t, r)
	if first != 0xb0 || body[0] != 0 || body[1] != 1 || body[len(body)-1] != 0x00 {
		t.Fatalf("UNSUBACK %x % x: want packet id 1 and success", first, body)
	}
}

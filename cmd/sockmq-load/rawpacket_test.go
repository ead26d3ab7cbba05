package main

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"testing"
	"testing/iotest"
)

// chunkReader returns its data in pieces of random length (1..max).
type chunkReader struct {
	data []byte
	r    *rand.Rand
	max  int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data), 1+c.r.Intn(c.max))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

type parsed struct {
	first byte
	body  string
}

// readAllPackets parses a whole stream with a small initial buffer.
func readAllPackets(t *testing.T, rd io.Reader, max int) ([]parsed, error) {
	t.Helper()
	pr := newPacketReader(16, max)
	var out []parsed
	for {
		for {
			first, body, ok, err := pr.next()
			if err != nil {
				return out, err
			}
			if !ok {
				break
			}
			out = append(out, parsed{first, string(body)})
		}
		if err := pr.fill(rd); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, err
		}
	}
}

// TestPacketReaderSplitPackets: packets split anywhere (one byte per
// read, random pieces), packets larger than the initial buffer and many
// packets in one read all come out whole and in order.
func TestPacketReaderSplitPackets(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 20000) // a three-byte remaining length
	var stream []byte
	var want []parsed
	add := func(pkt []byte) {
		stream = append(stream, pkt...)
		i := 1
		for pkt[i]&0x80 != 0 {
			i++
		}
		want = append(want, parsed{pkt[0], string(pkt[i+1:])})
	}
	for k := 0; k < 50; k++ {
		add(appendPublish(nil, "a/b", []byte("hello"), byte(k%3), uint16(k+1)))
		add(appendAck(nil, pktPuback, uint16(k)))
		add(appendAck(nil, pktPubrel, 0xFFFF))
		if k%10 == 0 {
			add(appendPublish(nil, "big/topic", big, 1, 7))
		}
		add([]byte{pktPingresp << 4, 0})
		add(appendPublish(nil, "t", make([]byte, 200), 0, 0)) // two-byte remaining length
	}
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return bytes.NewReader(stream) },
		"one byte": func() io.Reader { return iotest.OneByteReader(bytes.NewReader(stream)) },
		"random":   func() io.Reader { return &chunkReader{data: stream, r: rand.New(rand.NewSource(1)), max: 300} },
		"random small": func() io.Reader {
			return &chunkReader{data: stream, r: rand.New(rand.NewSource(2)), max: 5}
		},
	}
	for name, mk := range readers {
		got, err := readAllPackets(t, mk(), 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d packets, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: packet %d is %#x (%d bytes), want %#x (%d bytes)", name, i, got[i].first, len(got[i].body), want[i].first, len(want[i].body))
			}
		}
	}
	// The fields of a PUBLISH.
	qos, id, topic, payload, err := publishFields(want[0].first, []byte(want[0].body))
	if err != nil || qos != 0 || id != 0 || string(topic) != "a/b" || string(payload) != "hello" {
		t.Fatalf("publish fields: %d %d %q %q %v", qos, id, topic, payload, err)
	}
	p := appendPublish(nil, "x/y", []byte("pl"), 2, 513)
	qos, id, topic, payload, err = publishFields(p[0], p[2:])
	if err != nil || qos != 2 || id != 513 || string(topic) != "x/y" || string(payload) != "pl" {
		t.Fatalf("publish fields: %d %d %q %q %v", qos, id, topic, payload, err)
	}
}

// TestPacketReaderRejects: a packet over the limit and a remaining length
// of five bytes are protocol violations, not allocations or hangs; so are
// malformed PUBLISH bodies.
func TestPacketReaderRejects(t *testing.T) {
	over := appendPublish(nil, "t", make([]byte, 5000), 0, 0)
	if _, err := readAllPackets(t, bytes.NewReader(over), 4096); !errors.Is(err, errProtocol) {
		t.Fatalf("packet over the limit: %v", err)
	}
	if _, err := readAllPackets(t, bytes.NewReader([]byte{0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}), 1<<20); !errors.Is(err, errProtocol) {
		t.Fatalf("five-byte remaining length: %v", err)
	}
	for _, b := range []struct {
		first byte
		body  []byte
	}{
		{0x36, []byte{0, 1, 't', 0, 1}}, // QoS 3
		{0x30, []byte{0}},               // no topic length
		{0x30, []byte{0, 9, 't'}},       // topic longer than the packet
		{0x32, []byte{0, 1, 't', 0}},    // no packet id
		{0x32, []byte{0, 1, 't', 0, 0}}, // packet id 0
		{0x30, []byte{0, 0, 'x'}},       // empty topic
	} {
		if _, _, _, _, err := publishFields(b.first, b.body); !errors.Is(err, errProtocol) {
			t.Errorf("publish %#x % x: %v", b.first, b.body, err)
		}
	}
	if got := connackError(5).Error(); !bytes.Contains([]byte(got), []byte("not authorized")) {
		t.Errorf("connack 5: %q", got)
	}
}

// TestConnectPacketFlags: the raw client's CONNECT with and without a
// clean session, with user and password.
func TestConnectPacketFlags(t *testing.T) {
	if got, want := appendConnect(nil, "id", true, "u", "p", 60), connectPacket("id", "u", "p", 60); !bytes.Equal(got, want) {
		t.Fatalf("clean connect\n got % x\nwant % x", got, want)
	}
	p := appendConnect(nil, "id", false, "", "", 0)
	want := []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x00, 0, 0, 0, 2, 'i', 'd'}
	if !bytes.Equal(p, want) {
		t.Fatalf("persistent connect\n got % x\nwant % x", p, want)
	}
}

package testutil

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Raw is an MQTT client without a library's session logic: it sends exactly
// the packets a test writes and returns exactly the packets the broker
// sends, so tests can check flags (DUP, RETAIN), packet ids and QoS 2
// steps that client libraries hide. Packets are encoded and decoded with
// mochi-mqtt's codec.
type Raw struct {
	t       testing.TB
	Conn    net.Conn
	r       *bufio.Reader
	Version byte
}

// DialRaw opens a TCP connection to addr.
func DialRaw(t testing.TB, addr string, version byte) *Raw {
	t.Helper()
	c := Dial(t, addr)
	t.Cleanup(func() { _ = c.Close() })
	return &Raw{t: t, Conn: c, r: bufio.NewReader(c), Version: version}
}

// Send encodes and writes pk (ProtocolVersion is set from the client).
func (c *Raw) Send(pk packets.Packet) {
	c.t.Helper()
	pk.ProtocolVersion = c.Version
	var buf bytes.Buffer
	var err error
	switch pk.FixedHeader.Type {
	case packets.Connect:
		err = pk.ConnectEncode(&buf)
	case packets.Publish:
		err = pk.PublishEncode(&buf)
	case packets.Puback:
		err = pk.PubackEncode(&buf)
	case packets.Pubrec:
		err = pk.PubrecEncode(&buf)
	case packets.Pubrel:
		err = pk.PubrelEncode(&buf)
	case packets.Pubcomp:
		err = pk.PubcompEncode(&buf)
	case packets.Subscribe:
		err = pk.SubscribeEncode(&buf)
	case packets.Unsubscribe:
		err = pk.UnsubscribeEncode(&buf)
	case packets.Disconnect:
		err = pk.DisconnectEncode(&buf)
	case packets.Pingreq:
		err = pk.PingreqEncode(&buf)
	default:
		err = fmt.Errorf("raw client cannot send packet type %d", pk.FixedHeader.Type)
	}
	if err != nil {
		c.t.Fatalf("encode: %v", err)
	}
	if _, err := c.Conn.Write(buf.Bytes()); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// Connect sends CONNECT and returns the CONNACK. expiry is the MQTT 5
// session expiry (ignored for 3.1.1).
func (c *Raw) Connect(id string, clean bool, expiry uint32) packets.Packet {
	c.t.Helper()
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}}
	pk.Connect.ProtocolName = []byte("MQTT")
	pk.Connect.Clean = clean
	pk.Connect.ClientIdentifier = id
	pk.Connect.Keepalive = 60
	if c.Version == 5 && expiry > 0 {
		pk.Properties.SessionExpiryInterval = expiry
		pk.Properties.SessionExpiryIntervalFlag = true
	}
	c.Send(pk)
	ack := c.Next(5 * time.Second)
	if ack.FixedHeader.Type != packets.Connack {
		c.t.Fatalf("expected CONNACK, got %s", packets.PacketNames[ack.FixedHeader.Type])
	}
	return ack
}

// Subscribe subscribes to filter and returns the SUBACK's codes.
func (c *Raw) Subscribe(pid uint16, filter string, qos byte) []byte {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Subscribe, Qos: 1}, PacketID: pid,
		Filters: packets.Subscriptions{{Filter: filter, Qos: qos}}})
	for {
		pk := c.Next(5 * time.Second)
		if pk.FixedHeader.Type == packets.Suback && pk.PacketID == pid {
			return pk.ReasonCodes
		}
	}
}

// Publish sends a PUBLISH.
func (c *Raw) Publish(pid uint16, topic string, qos byte, retain, dup bool, payload string) {
	c.t.Helper()
	c.Send(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain, Dup: dup},
		PacketID: pid, TopicName: topic, Payload: []byte(payload)})
}

// Ack sends PUBACK, PUBREC, PUBREL or PUBCOMP for pid.
func (c *Raw) Ack(typ byte, pid uint16) {
	c.t.Helper()
	fh := packets.FixedHeader{Type: typ}
	if typ == packets.Pubrel {
		fh.Qos = 1
	}
	c.Send(packets.Packet{FixedHeader: fh, PacketID: pid})
}

// Next reads the next packet, failing the test after timeout.
func (c *Raw) Next(timeout time.Duration) packets.Packet {
	c.t.Helper()
	pk, err := c.TryNext(timeout)
	if err != nil {
		c.t.Fatalf("read packet: %v", err)
	}
	return pk
}

// TryNext reads the next packet or returns the read error (a timeout
// error when nothing came within timeout).
func (c *Raw) TryNext(timeout time.Duration) (packets.Packet, error) {
	_ = c.Conn.SetReadDeadline(time.Now().Add(timeout))
	defer func() { _ = c.Conn.SetReadDeadline(time.Time{}) }()
	h, err := c.r.ReadByte()
	if err != nil {
		return packets.Packet{}, err
	}
	n, _, err := packets.DecodeLength(c.r)
	if err != nil {
		return packets.Packet{}, err
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return packets.Packet{}, err
	}
	pk := packets.Packet{ProtocolVersion: c.Version}
	if err := pk.FixedHeader.Decode(h); err != nil {
		return pk, err
	}
	pk.FixedHeader.Remaining = n
	switch pk.FixedHeader.Type {
	case packets.Connack:
		err = pk.ConnackDecode(body)
	case packets.Publish:
		err = pk.PublishDecode(body)
	case packets.Puback:
		err = pk.PubackDecode(body)
	case packets.Pubrec:
		err = pk.PubrecDecode(body)
	case packets.Pubrel:
		err = pk.PubrelDecode(body)
	case packets.Pubcomp:
		err = pk.PubcompDecode(body)
	case packets.Suback:
		err = pk.SubackDecode(body)
	case packets.Unsuback:
		err = pk.UnsubackDecode(body)
	case packets.Disconnect:
		err = pk.DisconnectDecode(body)
	}
	return pk, err
}

// Expect reads packets until one of type typ arrives and returns it;
// other packets are returned in skipped.
func (c *Raw) Expect(typ byte, timeout time.Duration) (pk packets.Packet, skipped []packets.Packet) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			c.t.Fatalf("no %s within %v (got %d other packets)", packets.PacketNames[typ], timeout, len(skipped))
		}
		p := c.Next(left)
		if p.FixedHeader.Type == typ {
			return p, skipped
		}
		skipped = append(skipped, p)
	}
}

// Close closes the connection (a network drop, not a DISCONNECT).
func (c *Raw) Close() { _ = c.Conn.Close() }

package broker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The engine frames packets itself and uses mochi-mqtt's packets package to
// decode and encode their contents.

// errMalformed wraps framing errors.
var errMalformed = errors.New("malformed packet")

// errTooLarge reports a packet over limits.max_packet_size.
var errTooLarge = errors.New("packet larger than limits.max_packet_size")

// frameHeader parses a fixed header at the start of b: the first byte, the
// remaining length and the header's size. ok is false while b is too short
// to tell.
func frameHeader(b []byte) (first byte, remaining, hdr int, ok bool, err error) {
	if len(b) < 2 {
		return 0, 0, 0, false, nil
	}
	first = b[0]
	mult := 1
	for i := 1; i < 5; i++ {
		if i >= len(b) {
			return 0, 0, 0, false, nil
		}
		c := b[i]
		remaining += int(c&0x7f) * mult
		if c&0x80 == 0 {
			return first, remaining, i + 1, true, nil
		}
		mult *= 128
	}
	return 0, 0, 0, false, fmt.Errorf("%w: remaining length longer than 4 bytes", errMalformed)
}

// unsafeString views b as a string without copying. b must never change.
func unsafeString(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(b), len(b))
}

var packetPool = sync.Pool{New: func() any { return new(packets.Packet) }}

func getPacket() *packets.Packet { return packetPool.Get().(*packets.Packet) }

func putPacket(pk *packets.Packet) {
	*pk = packets.Packet{}
	packetPool.Put(pk)
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// encode runs fn on a pooled buffer and returns a copy of what it wrote.
func encode(fn func(*bytes.Buffer) error) ([]byte, error) {
	b := bufPool.Get().(*bytes.Buffer)
	b.Reset()
	err := fn(b)
	out := append([]byte(nil), b.Bytes()...)
	if b.Cap() <= 64<<10 {
		bufPool.Put(b)
	}
	return out, err
}

// ackPacket encodes PUBACK, PUBREC, PUBREL or PUBCOMP. MQTT 5 reason codes
// other than success are encoded with the reason; success is the short
// 4-byte form every version accepts.
func ackPacket(typ byte, pid uint16, version, reason byte) []byte {
	first := typ << 4
	if typ == packets.Pubrel {
		first |= 0x02
	}
	if version == 5 && reason != 0 {
		return []byte{first, 3, byte(pid >> 8), byte(pid), reason}
	}
	return []byte{first, 2, byte(pid >> 8), byte(pid)}
}

var pingresp = []byte{packets.Pingresp << 4, 0}

// encodePublish encodes a PUBLISH of m for a subscriber.
func encodePublish(m *msg, version, qos byte, pid uint16, retain, dup bool, subIDs []uint32, nowUnix int64) ([]byte, error) {
	pk := getPacket()
	defer putPacket(pk)
	pk.FixedHeader = packets.FixedHeader{Type: packets.Publish, Qos: qos, Retain: retain, Dup: dup}
	pk.ProtocolVersion = version
	pk.TopicName = m.topic
	pk.Payload = m.payload()
	pk.PacketID = pid
	// mochi only encodes response topic and correlation data when this is
	// set (it ties them to "request response information", which is about
	// CONNACK's response information, not about forwarding a publisher's
	// properties).
	pk.Mods.AllowResponseInfo = true
	if version == 5 {
		if p := m.props; p != nil {
			pk.Properties.ContentType = p.contentType
			pk.Properties.ResponseTopic = p.responseTopic
			pk.Properties.CorrelationData = p.correlation
			pk.Properties.User = p.user
			pk.Properties.PayloadFormat = p.payloadFormat
			pk.Properties.PayloadFormatFlag = p.hasPayloadFormat
		}
		if m.expiry != 0 {
			left := m.expiry - nowUnix
			if left < 1 {
				left = 1
			}
			pk.Properties.MessageExpiryInterval = uint32(left)
		}
		for _, id := range subIDs {
			pk.Properties.SubscriptionIdentifier = append(pk.Properties.SubscriptionIdentifier, int(id))
		}
	}
	return encode(pk.PublishEncode)
}

// u16 reads a big-endian uint16 (packet ids of short packets).
func u16(b []byte) uint16 { return binary.BigEndian.Uint16(b) }

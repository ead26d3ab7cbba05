package main

import (
	"errors"
	"fmt"
	"io"
)

// MQTT 3.1.1 control packet types (the high nibble of a packet's first
// byte), as the raw client uses them.
const (
	pktConnect     = 1
	pktConnack     = 2
	pktPublish     = 3
	pktPuback      = 4
	pktPubrec      = 5
	pktPubrel      = 6
	pktPubcomp     = 7
	pktSubscribe   = 8
	pktSuback      = 9
	pktUnsubscribe = 10
	pktUnsuback    = 11
	pktPingreq     = 12
	pktPingresp    = 13
	pktDisconnect  = 14
)

var pktNames = [16]string{"reserved(0)", "CONNECT", "CONNACK", "PUBLISH", "PUBACK", "PUBREC", "PUBREL", "PUBCOMP",
	"SUBSCRIBE", "SUBACK", "UNSUBSCRIBE", "UNSUBACK", "PINGREQ", "PINGRESP", "DISCONNECT", "reserved(15)"}

// errProtocol marks a broker that broke the MQTT 3.1.1 protocol (the
// error text says how).
var errProtocol = errors.New("MQTT protocol violation by the broker")

func protoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProtocol, fmt.Sprintf(format, args...))
}

// packetReader splits a byte stream into MQTT packets. It reads into one
// buffer that it reuses, so one read yields every packet that arrived
// with it; a packet's body stays valid until the next fill. The buffer
// grows only for a packet larger than it, and no packet may exceed max
// bytes (fixed header included).
type packetReader struct {
	buf  []byte
	r, w int // unparsed bytes are buf[r:w]
	max  int
	need int // size of the incomplete packet at r, when it is larger than buf
}

func newPacketReader(size, max int) *packetReader {
	return &packetReader{buf: make([]byte, min(size, max)), max: max}
}

// space moves the bytes not parsed yet to the front of the buffer (and
// grows it for a packet larger than it) and returns the free part.
func (p *packetReader) space() []byte {
	if p.r > 0 {
		p.w = copy(p.buf, p.buf[p.r:p.w])
		p.r = 0
	}
	if p.need > len(p.buf) {
		grown := make([]byte, p.need)
		copy(grown, p.buf[:p.w])
		p.buf = grown
	}
	return p.buf[p.w:]
}

// fill reads once from rd into the buffer.
func (p *packetReader) fill(rd io.Reader) error {
	n, err := rd.Read(p.space())
	p.w += n
	if n > 0 {
		return nil // an error comes back with the next read
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// next returns the next complete packet: its first byte (type and flags)
// and its body (the bytes after the remaining length). ok is false when
// more bytes must be read first.
func (p *packetReader) next() (first byte, body []byte, ok bool, err error) {
	avail := p.buf[p.r:p.w]
	if len(avail) < 2 {
		return 0, nil, false, nil
	}
	rem, mul, i := 0, 1, 1
	for {
		if i >= len(avail) {
			return 0, nil, false, nil
		}
		b := avail[i]
		rem += int(b&127) * mul
		i++
		if b < 128 {
			break
		}
		if i == 5 {
			return 0, nil, false, protoErr("remaining length longer than 4 bytes")
		}
		mul *= 128
	}
	total := i + rem
	if total > p.max {
		return 0, nil, false, protoErr("%s of %d bytes, more than the limit of %d", pktNames[avail[0]>>4], total, p.max)
	}
	if len(avail) < total {
		p.need = total
		return 0, nil, false, nil
	}
	p.need = 0
	p.r += total
	return avail[0], avail[i:total], true, nil
}

// appendRemLen appends an MQTT remaining length.
func appendRemLen(dst []byte, l int) []byte {
	for {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		dst = append(dst, b)
		if l == 0 {
			return dst
		}
	}
}

func appendStr(dst []byte, s string) []byte {
	return append(append(dst, byte(len(s)>>8), byte(len(s))), s...)
}

// appendConnect appends an MQTT 3.1.1 CONNECT.
func appendConnect(dst []byte, id string, clean bool, user, pass string, keepalive uint16) []byte {
	flags := byte(0)
	if clean {
		flags |= 0x02
	}
	n := 10 + 2 + len(id)
	if user != "" {
		flags |= 0x80
		n += 2 + len(user)
		if pass != "" {
			flags |= 0x40
			n += 2 + len(pass)
		}
	}
	dst = appendRemLen(append(dst, pktConnect<<4), n)
	dst = appendStr(dst, "MQTT")
	dst = append(dst, 4, flags, byte(keepalive>>8), byte(keepalive))
	dst = appendStr(dst, id)
	if user != "" {
		dst = appendStr(dst, user)
		if pass != "" {
			dst = appendStr(dst, pass)
		}
	}
	return dst
}

// appendPublish appends a PUBLISH (id is ignored for QoS 0).
func appendPublish(dst []byte, topic string, payload []byte, qos byte, id uint16) []byte {
	n := 2 + len(topic) + len(payload)
	if qos > 0 {
		n += 2
	}
	dst = appendRemLen(append(dst, pktPublish<<4|qos<<1), n)
	dst = appendStr(dst, topic)
	if qos > 0 {
		dst = append(dst, byte(id>>8), byte(id))
	}
	return append(dst, payload...)
}

// appendAck appends a two-byte packet carrying a packet id: PUBACK,
// PUBREC, PUBREL (flags 0010) or PUBCOMP.
func appendAck(dst []byte, typ byte, id uint16) []byte {
	first := typ << 4
	if typ == pktPubrel {
		first |= 0x02
	}
	return append(dst, first, 2, byte(id>>8), byte(id))
}

// appendSubscribe appends a SUBSCRIBE for one filter.
func appendSubscribe(dst []byte, id uint16, filter string, qos byte) []byte {
	dst = appendRemLen(append(dst, pktSubscribe<<4|0x02), 2+2+len(filter)+1)
	dst = append(dst, byte(id>>8), byte(id))
	return append(appendStr(dst, filter), qos)
}

// publishFields splits a PUBLISH body; id is 0 for QoS 0.
func publishFields(first byte, body []byte) (qos byte, id uint16, topic, payload []byte, err error) {
	qos = first >> 1 & 3
	if qos == 3 {
		return 0, 0, nil, nil, protoErr("PUBLISH with QoS 3")
	}
	if len(body) < 2 {
		return 0, 0, nil, nil, protoErr("PUBLISH of %d bytes has no topic", len(body))
	}
	tl := int(body[0])<<8 | int(body[1])
	end := 2 + tl
	if qos > 0 {
		end += 2
	}
	if tl == 0 || len(body) < end {
		return 0, 0, nil, nil, protoErr("PUBLISH with a topic length of %d in %d bytes", tl, len(body))
	}
	topic = body[2 : 2+tl]
	if qos > 0 {
		id = uint16(body[2+tl])<<8 | uint16(body[3+tl])
		if id == 0 {
			return 0, 0, nil, nil, protoErr("QoS %d PUBLISH with packet id 0", qos)
		}
	}
	return qos, id, topic, body[end:], nil
}

// connackError names a CONNACK return code.
func connackError(code byte) error {
	reasons := [...]string{1: "unacceptable protocol version", 2: "identifier rejected", 3: "server unavailable",
		4: "bad user name or password", 5: "not authorized"}
	r := "unknown return code"
	if int(code) < len(reasons) && reasons[code] != "" {
		r = reasons[code]
	}
	return fmt.Errorf("connection refused by the broker: CONNACK return code %d (%s)", code, r)
}

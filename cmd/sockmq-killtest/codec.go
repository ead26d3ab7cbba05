package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The MQTT control packets the harness speaks. Only what a publisher and a
// subscriber need: no will, no authentication, no topic aliases.
const (
	typeConnect    byte = 1
	typeConnack    byte = 2
	typePublish    byte = 3
	typePuback     byte = 4
	typePubrec     byte = 5
	typePubrel     byte = 6
	typePubcomp    byte = 7
	typeSubscribe  byte = 8
	typeSuback     byte = 9
	typePingreq    byte = 12
	typePingresp   byte = 13
	typeDisconnect byte = 14
)

// Protocol levels in CONNECT.
const (
	mqtt311 byte = 4
	mqtt5   byte = 5
)

// maxPacket bounds what the harness reads; its own messages are tiny.
const maxPacket = 1 << 20

var errMalformed = errors.New("malformed packet")

// packet is one control packet as read from the wire: the type, the low
// nibble of the fixed header and the variable header plus payload.
type packet struct {
	typ   byte
	flags byte
	body  []byte
}

// readPacket reads one control packet.
func readPacket(r *bufio.Reader) (packet, error) {
	h, err := r.ReadByte()
	if err != nil {
		return packet{}, err
	}
	n, err := readVarint(r)
	if err != nil {
		return packet{}, err
	}
	if n > maxPacket {
		return packet{}, fmt.Errorf("packet of %d bytes: %w", n, errMalformed)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return packet{}, err
	}
	return packet{typ: h >> 4, flags: h & 0x0f, body: body}, nil
}

func readVarint(r io.ByteReader) (int, error) {
	v, mul := 0, 1
	for i := 0; i < 4; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, err
		}
		v += int(b&0x7f) * mul
		if b&0x80 == 0 {
			return v, nil
		}
		mul *= 128
	}
	return 0, fmt.Errorf("remaining length: %w", errMalformed)
}

// frame returns a whole packet: fixed header, remaining length, body.
func frame(typ, flags byte, body []byte) []byte {
	b := make([]byte, 0, len(body)+5)
	b = append(b, typ<<4|flags)
	b = appendVarint(b, len(body))
	return append(b, body...)
}

func appendVarint(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// connectOptions are the CONNECT fields the harness varies.
type connectOptions struct {
	version   byte
	clientID  string
	clean     bool   // clean session (3.1.1) or clean start (5)
	keepAlive uint16 // seconds; 0 disables
	// sessionExpiry is the MQTT 5 Session Expiry Interval in seconds; 0
	// omits the property (the session ends with the connection).
	sessionExpiry uint32
}

func connectPacket(o connectOptions) []byte {
	b := appendString(nil, "MQTT")
	b = append(b, o.version)
	var flags byte
	if o.clean {
		flags |= 0x02
	}
	b = append(b, flags)
	b = binary.BigEndian.AppendUint16(b, o.keepAlive)
	if o.version == mqtt5 {
		var props []byte
		if o.sessionExpiry > 0 {
			props = append(props, 0x11)
			props = binary.BigEndian.AppendUint32(props, o.sessionExpiry)
		}
		b = appendVarint(b, len(props))
		b = append(b, props...)
	}
	b = appendString(b, o.clientID)
	return frame(typeConnect, 0, b)
}

// connack is the part of a CONNACK the harness uses.
type connack struct {
	sessionPresent bool
	code           byte // 3.1.1 return code or MQTT 5 reason code; 0 = accepted
	// serverKeepAlive is the MQTT 5 Server Keep Alive, or -1 when absent.
	serverKeepAlive int
}

func parseConnack(version byte, body []byte) (connack, error) {
	if len(body) < 2 {
		return connack{}, fmt.Errorf("connack: %w", errMalformed)
	}
	ca := connack{sessionPresent: body[0]&1 == 1, code: body[1], serverKeepAlive: -1}
	if version == mqtt5 && len(body) > 2 {
		err := walkProperties(body[2:], func(id byte, v []byte) {
			if id == 0x13 && len(v) == 2 {
				ca.serverKeepAlive = int(binary.BigEndian.Uint16(v))
			}
		})
		if err != nil {
			return connack{}, fmt.Errorf("connack properties: %w", err)
		}
	}
	return ca, nil
}

// publishPacket encodes a PUBLISH (no properties under MQTT 5).
func publishPacket(version byte, topic string, qos byte, id uint16, dup bool, payload []byte) []byte {
	b := appendString(make([]byte, 0, len(topic)+len(payload)+8), topic)
	if qos > 0 {
		b = binary.BigEndian.AppendUint16(b, id)
	}
	if version == mqtt5 {
		b = append(b, 0) // property length
	}
	b = append(b, payload...)
	flags := qos << 1
	if dup {
		flags |= 0x08
	}
	return frame(typePublish, flags, b)
}

// publish is a received PUBLISH.
type publish struct {
	topic   string
	qos     byte
	dup     bool
	id      uint16
	payload []byte
}

func parsePublish(version byte, p packet) (publish, error) {
	pub := publish{qos: p.flags >> 1 & 3, dup: p.flags&0x08 != 0}
	b := p.body
	if len(b) < 2 {
		return pub, fmt.Errorf("publish: %w", errMalformed)
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b) < 2+n {
		return pub, fmt.Errorf("publish topic: %w", errMalformed)
	}
	pub.topic, b = string(b[2:2+n]), b[2+n:]
	if pub.qos > 0 {
		if len(b) < 2 {
			return pub, fmt.Errorf("publish packet id: %w", errMalformed)
		}
		pub.id, b = binary.BigEndian.Uint16(b), b[2:]
	}
	if version == mqtt5 {
		rest, err := skipProperties(b)
		if err != nil {
			return pub, fmt.Errorf("publish properties: %w", err)
		}
		b = rest
	}
	pub.payload = b
	return pub, nil
}

// ackPacket encodes PUBACK, PUBREC, PUBREL or PUBCOMP with success (the
// short form, valid in both versions).
func ackPacket(typ byte, id uint16) []byte {
	var flags byte
	if typ == typePubrel {
		flags = 0x02
	}
	return frame(typ, flags, binary.BigEndian.AppendUint16(nil, id))
}

// parseAck returns the packet id and reason code of PUBACK, PUBREC, PUBREL
// or PUBCOMP (3.1.1 has no reason code: always 0).
func parseAck(p packet) (id uint16, reason byte, err error) {
	if len(p.body) < 2 {
		return 0, 0, fmt.Errorf("ack type %d: %w", p.typ, errMalformed)
	}
	id = binary.BigEndian.Uint16(p.body)
	if len(p.body) > 2 {
		reason = p.body[2]
	}
	return id, reason, nil
}

func subscribePacket(version byte, id uint16, filter string, qos byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, id)
	if version == mqtt5 {
		b = append(b, 0)
	}
	b = appendString(b, filter)
	b = append(b, qos) // 3.1.1 requested QoS; MQTT 5 options with only the QoS bits
	return frame(typeSubscribe, 0x02, b)
}

// parseSuback returns the packet id and the first return/reason code.
func parseSuback(version byte, body []byte) (id uint16, code byte, err error) {
	if len(body) < 3 {
		return 0, 0, fmt.Errorf("suback: %w", errMalformed)
	}
	id, b := binary.BigEndian.Uint16(body), body[2:]
	if version == mqtt5 {
		if b, err = skipProperties(b); err != nil {
			return 0, 0, fmt.Errorf("suback properties: %w", err)
		}
	}
	if len(b) < 1 {
		return 0, 0, fmt.Errorf("suback codes: %w", errMalformed)
	}
	return id, b[0], nil
}

// disconnectPacket is a normal DISCONNECT (MQTT 5: reason 0, no properties).
func disconnectPacket() []byte { return frame(typeDisconnect, 0, nil) }

func pingPacket() []byte { return frame(typePingreq, 0, nil) }

// skipProperties returns what follows an MQTT 5 property list.
func skipProperties(b []byte) ([]byte, error) {
	n, used, err := varintAt(b)
	if err != nil || len(b) < used+n {
		return nil, errMalformed
	}
	return b[used+n:], nil
}

// walkProperties calls fn for each property of the list at the start of b.
func walkProperties(b []byte, fn func(id byte, value []byte)) error {
	n, used, err := varintAt(b)
	if err != nil || len(b) < used+n {
		return errMalformed
	}
	props := b[used : used+n]
	for len(props) > 0 {
		id := props[0]
		props = props[1:]
		size, err := propertySize(id, props)
		if err != nil {
			return err
		}
		fn(id, props[:size])
		props = props[size:]
	}
	return nil
}

// propertySize returns the encoded size of the value of property id at the
// start of b (MQTT 5 §2.2.2.2).
func propertySize(id byte, b []byte) (int, error) {
	size := 0
	switch id {
	case 0x01, 0x17, 0x19, 0x24, 0x25, 0x28, 0x29, 0x2A:
		size = 1
	case 0x13, 0x21, 0x22, 0x23:
		size = 2
	case 0x02, 0x11, 0x18, 0x27:
		size = 4
	case 0x0B:
		_, used, err := varintAt(b)
		if err != nil {
			return 0, err
		}
		size = used
	case 0x03, 0x08, 0x09, 0x12, 0x15, 0x16, 0x1A, 0x1C, 0x1F:
		if len(b) < 2 {
			return 0, errMalformed
		}
		size = 2 + int(binary.BigEndian.Uint16(b))
	case 0x26: // user property: two strings
		if len(b) < 2 {
			return 0, errMalformed
		}
		k := 2 + int(binary.BigEndian.Uint16(b))
		if len(b) < k+2 {
			return 0, errMalformed
		}
		size = k + 2 + int(binary.BigEndian.Uint16(b[k:]))
	default:
		return 0, fmt.Errorf("unknown property 0x%02x: %w", id, errMalformed)
	}
	if len(b) < size {
		return 0, errMalformed
	}
	return size, nil
}

func varintAt(b []byte) (v, used int, err error) {
	mul := 1
	for i := 0; i < 4 && i < len(b); i++ {
		v += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			return v, i + 1, nil
		}
		mul *= 128
	}
	return 0, 0, errMalformed
}

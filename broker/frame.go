package broker

import (
	"fmt"

	"github.com/mochi-mqtt/server/v2/packets"
)

// handleFrame decodes and handles one complete packet (b is the whole
// packet; it aliases the read buffer, so everything kept is copied).
func (c *conn) handleFrame(b []byte) error {
	var fh packets.FixedHeader
	if err := fh.Decode(b[0]); err != nil {
		return err
	}
	_, rem, hdr, _, _ := frameHeader(b)
	fh.Remaining = rem
	body := b[hdr:]
	c.s.metrics.packetsIn.Add(1)
	if c.state.Load() == stNew {
		if fh.Type != packets.Connect {
			return fmt.Errorf("%w: first packet is %s, not CONNECT", errMalformed, packets.PacketNames[fh.Type])
		}
		return c.handleConnect(fh, body)
	}
	switch fh.Type {
	case packets.Publish:
		return c.handlePublish(fh, body)
	case packets.Puback, packets.Pubrec, packets.Pubrel, packets.Pubcomp:
		if len(body) < 2 {
			return packets.ErrMalformedPacketID
		}
		reason := byte(0)
		if c.version == 5 && len(body) > 2 {
			reason = body[2]
		}
		return c.handleAck(fh.Type, u16(body), reason)
	case packets.Subscribe:
		return c.handleSubscribe(fh, body)
	case packets.Unsubscribe:
		return c.handleUnsubscribe(fh, body)
	case packets.Pingreq:
		c.send(pingresp, 0)
		return nil
	case packets.Disconnect:
		return c.handleDisconnect(fh, body)
	case packets.Connect:
		return packets.ErrProtocolViolationSecondConnect // [MQTT-3.1.0-2]
	case packets.Auth:
		return packets.ErrProtocolViolation // enhanced authentication is not offered
	default:
		return fmt.Errorf("%w: a client may not send %s", packets.ErrProtocolViolation, packets.PacketNames[fh.Type])
	}
}

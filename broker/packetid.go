package broker

import (
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// packetIDSwaps works around a mochi bug: it keeps the messages it sends to
// a client in the same packet-id map as the client's own packet ids, and
// refuses a SUBSCRIBE or UNSUBSCRIBE whose id matches a message in flight
// to that client with 0x91 "packet identifier in use". MQTT keeps the two
// directions apart, and both sides usually count from 1, so a client that
// subscribes while retained or queued messages are being delivered to it
// is refused at random.
//
// When the client's id collides with a message the broker sent, the packet
// is processed under a free id and the client's id is put back on the
// SUBACK/UNSUBACK. A client processes its packets in order, so one pending
// swap per client is enough.
type packetIDSwaps struct{ m sync.Map } // *mqtt.Client -> [2]uint16{substitute, original}

// swapIn returns the id to process pk under.
func (p *packetIDSwaps) swapIn(cl *mqtt.Client, pk *packets.Packet) {
	t := pk.FixedHeader.Type
	if (t != packets.Subscribe && t != packets.Unsubscribe) || pk.PacketID == 0 {
		return
	}
	in, ok := cl.State.Inflight.Get(pk.PacketID)
	if !ok || in.FixedHeader.Type != packets.Publish {
		return // free, or used by the client's own QoS 2 flow: a real conflict
	}
	for id := uint16(65535); id > 0; id-- {
		if _, used := cl.State.Inflight.Get(id); !used {
			p.m.Store(cl, [2]uint16{id, pk.PacketID})
			pk.PacketID = id
			return
		}
	}
}

// swapOut restores the client's id on the acknowledgement.
func (p *packetIDSwaps) swapOut(cl *mqtt.Client, pk *packets.Packet) {
	t := pk.FixedHeader.Type
	if t != packets.Suback && t != packets.Unsuback {
		return
	}
	v, ok := p.m.Load(cl)
	if !ok {
		return
	}
	if ids := v.([2]uint16); ids[0] == pk.PacketID {
		pk.PacketID = ids[1]
		p.m.Delete(cl)
	}
}

// forget drops a client's pending swap when it disconnects.
func (p *packetIDSwaps) forget(cl *mqtt.Client) { p.m.Delete(cl) }

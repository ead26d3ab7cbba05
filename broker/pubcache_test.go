package broker

import (
	"bytes"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// The cached encoding of a fan-out is byte for byte what the codec writes
// for each subscriber, whatever its version, QoS, flags and packet id.
func TestPubCacheMatchesCodec(t *testing.T) {
	now := time.Now()
	plain := newMsg("a/b/c", &packets.Packet{Payload: []byte("hello")}, "pub", now, 0)
	withProps := newMsg("t", &packets.Packet{Payload: []byte("x"), Properties: packets.Properties{
		ContentType: "text/plain", PayloadFormat: 1, PayloadFormatFlag: true, MessageExpiryInterval: 60,
		User: []packets.UserProperty{{Key: "k", Val: "v"}}}}, "pub", now, 0)
	long := newMsg("long/topic", &packets.Packet{Payload: bytes.Repeat([]byte{7}, 300)}, "pub", now, 0)
	for _, m := range []*msg{plain, withProps, long} {
		var pc pubCache
		pc.reset(m, now.Unix())
		pid := uint16(1)
		for range 2 { // the second round comes from the templates
			for _, version := range []byte{3, 4, 5} {
				for qos := byte(0); qos <= 2; qos++ {
					for _, retain := range []bool{false, true} {
						for _, dup := range []bool{false, true} {
							if qos == 0 && dup {
								continue
							}
							p := pid
							if qos == 0 {
								p = 0
							}
							want, err := encodePublish(m, version, qos, p, retain, dup, nil, now.Unix())
							if err != nil {
								t.Fatal(err)
							}
							got, err := pc.encode(m, version, qos, p, retain, dup, nil, now.Unix())
							if err != nil || !bytes.Equal(got, want) {
								t.Fatalf("%q v%d qos %d retain %v dup %v pid %d:\n got %x (%v)\nwant %x", m.topic, version, qos, retain, dup, p, got, err, want)
							}
							pid += 257
						}
					}
				}
			}
		}
		// Subscription identifiers are per subscriber: not cached.
		want, _ := encodePublish(m, 5, 1, 9, false, false, []uint32{3}, now.Unix())
		if got, _ := pc.encode(m, 5, 1, 9, false, false, []uint32{3}, now.Unix()); !bytes.Equal(got, want) {
			t.Fatalf("with a subscription identifier: got %x, want %x", got, want)
		}
	}
}

// A QoS 1 fan-out copies the encoded message once per subscriber (one
// allocation) and encodes it only once.
func TestPubCacheAllocations(t *testing.T) {
	now := time.Now()
	m := newMsg("a/b", &packets.Packet{Payload: make([]byte, 64)}, "pub", now, 0)
	var pc pubCache
	pc.reset(m, now.Unix())
	_, _ = pc.encode(m, 4, 1, 1, false, false, nil, now.Unix())
	if n := testing.AllocsPerRun(1000, func() { _, _ = pc.encode(m, 4, 1, 2, false, false, nil, now.Unix()) }); n > 1 {
		t.Fatalf("%.1f allocations per QoS 1 delivery, want 1", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _, _ = pc.encode(m, 4, 0, 0, false, false, nil, now.Unix()) }); n > 0 {
		t.Fatalf("%.1f allocations per QoS 0 delivery after the first, want 0", n)
	}
}

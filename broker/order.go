package broker

import (
	"sort"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// restoreQueueOrder fixes the order in which mochi resends a session's
// queued messages. mochi sorts them by uint16(Created), Created being whole
// seconds, with an unstable sort: messages queued within the same second
// come back in random order, which breaks MQTT's per-topic ordering. Before
// the session is inherited we sort them by (Created, packet id) and give
// them distinct, increasing Created values.
func restoreQueueOrder(existing *mqtt.Client) {
	pks := existing.State.Inflight.GetAll(false)
	n := len(pks)
	if n < 2 {
		return
	}
	// Packet ids grow per message and wrap at 65535: compare them relative
	// to the smallest id when the spread says a wrap happened.
	minID, maxID := pks[0].PacketID, pks[0].PacketID
	for _, p := range pks {
		minID, maxID = min(minID, p.PacketID), max(maxID, p.PacketID)
	}
	wrapped := maxID-minID > 32768
	key := func(p packets.Packet) int {
		id := int(p.PacketID)
		if wrapped && id < 32768 {
			id += 65536
		}
		return id
	}
	sort.SliceStable(pks, func(i, j int) bool {
		if pks[i].Created != pks[j].Created {
			return pks[i].Created < pks[j].Created
		}
		return key(pks[i]) < key(pks[j])
	})
	// Choose base so that uint16(base+i) increases for every i < n: mochi's
	// sort key wraps every 65536 seconds.
	base := time.Now().Unix() - int64(n)
	if r := base & 0xffff; r+int64(n)-1 > 0xffff {
		base -= r + int64(n) - 0x10000
	}
	for i := range pks {
		pks[i].Created = base + int64(i)
		existing.State.Inflight.Set(pks[i])
	}
}

// OnSessionEstablish runs before mochi inherits an existing session.
func (h *policyHook) OnSessionEstablish(cl *mqtt.Client, _ packets.Packet) {
	h.s.wills.cancel(cl.ID) // a restored session's will is void once it reconnects
	if existing, ok := h.s.mq.Clients.Get(cl.ID); ok && existing != cl {
		h.s.dropUnreadable(existing, identityOf(cl))
		restoreQueueOrder(existing)
		if !existing.Closed() {
			h.s.takeovers.Store(cl)
		}
	}
}

package broker

import (
	"errors"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
)

// willGuard makes sure a will is published when the broker ends a
// connection (takeover, kick, shutdown). mochi publishes the will only when
// its read loop fails; if the server stops the client before that loop has
// started (right after CONNACK, while the session is being set up) the
// loop returns without error and mochi discards the will, although MQTT 5
// 3.1.4 says a taken-over client's will is published. The guard keeps a
// copy of each will once the session is established, notes when mochi handles it, and
// publishes it itself when mochi did not.
type willGuard struct {
	mu    sync.Mutex
	wills map[*mqtt.Client]*guardedWill
}

type guardedWill struct {
	will    mqtt.Will
	handled bool // mochi's sendLWT ran (OnWill)
}

func (g *willGuard) remember(cl *mqtt.Client) {
	if cl.Properties.Will.Flag == 0 {
		return
	}
	g.mu.Lock()
	if g.wills == nil {
		g.wills = make(map[*mqtt.Client]*guardedWill)
	}
	g.wills[cl] = &guardedWill{will: cl.Properties.Will}
	g.mu.Unlock()
}

func (g *willGuard) markHandled(cl *mqtt.Client) {
	g.mu.Lock()
	if w, ok := g.wills[cl]; ok {
		w.handled = true
	}
	g.mu.Unlock()
}

// take removes and returns cl's will if mochi never handled it.
func (g *willGuard) take(cl *mqtt.Client) (mqtt.Will, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	w, ok := g.wills[cl]
	delete(g.wills, cl)
	if !ok || w.handled {
		return mqtt.Will{}, false
	}
	return w.will, true
}

// publishMissedWill runs in OnDisconnect: if the server ended cl's
// connection and mochi skipped its will, the will is published now (or,
// with a will delay, scheduled); its permission is checked when it is sent.
func (s *Server) publishMissedWill(cl *mqtt.Client, err error) {
	w, ok := s.willGuard.take(cl)
	if !ok {
		return
	}
	cause := cl.StopCause()
	if err != nil || cause == nil || errors.Is(cause, packets.CodeDisconnect) {
		return // mochi's own path (err != nil), or a clean DISCONNECT
	}
	takeover := errors.Is(cause, packets.ErrSessionTakenOver)
	if w.WillDelayInterval > 0 && takeover {
		return // the session continues on the new connection
	}
	id := identityOf(cl)
	id.Username = strings.Clone(id.Username) // outlives cl in a delayed send
	if w.WillDelayInterval > 0 {
		s.wills.schedule(cl.ID, secondsDuration(w.WillDelayInterval), func() {
			if cur, ok := s.mq.Clients.Get(id.ClientID); ok && cur != cl && !cur.Closed() {
				return // reconnected meanwhile
			}
			s.sendWill(id, w)
		})
		return
	}
	if s.sendWill(id, w) && s.store != nil {
		s.store.clearWill(cl.ID)
	}
}

// sendWill publishes a will that mochi could not publish itself, with the
// checks every will gets when it is sent: not into a reserved namespace,
// and only if the client may still write the topic. It reports whether the
// will was published.
func (s *Server) sendWill(id auth.Identity, w mqtt.Will) bool {
	if IsReservedTopic(w.TopicName) || (s.auth != nil && !s.auth.Allowed(id, w.TopicName, auth.Write)) {
		s.log.Info("will dropped: topic no longer permitted", "client", id.ClientID, "user", id.Username, "topic", w.TopicName)
		return false
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: w.Qos, Retain: w.Retain},
		TopicName:   w.TopicName,
		Payload:     w.Payload,
		PacketID:    uint16(w.Qos),
		Properties:  packets.Properties{User: w.User},
	}
	if err := s.mq.InjectPacket(s.internal, pk); err != nil {
		s.log.Warn("will not published", "client", id.ClientID, "error", err)
		return false
	}
	return true
}

func secondsDuration(n uint32) time.Duration { return time.Duration(n) * time.Second }

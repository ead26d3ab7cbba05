package app

import (
	"errors"
	"log/slog"
	"strconv"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/presence"
)

// presencePublisher publishes presence documents and events through the
// broker's internal client (the only writer of $presence/...).
type presencePublisher struct{ b *broker.Server }

var _ presence.Publisher = presencePublisher{}

func (p presencePublisher) PublishPresence(topic string, payload []byte, retain bool) error {
	m := broker.Message{Topic: topic, Payload: payload, Retain: retain, QoS: 1}
	if len(payload) > 0 {
		m.ContentType, m.PayloadFormat, m.HasPayloadFormat = "application/json", 1, true
	}
	err := p.b.Publish(m)
	if errors.Is(err, broker.ErrNotRunning) {
		return nil // shutting down: presence is not persisted anyway
	}
	return err
}

// mqttConnID is the presence connection id of an MQTT connection.
func mqttConnID(n uint64) string {
	if n == 0 {
		return ""
	}
	return "mqtt-" + strconv.FormatUint(n, 10)
}

// wirePresence feeds the broker's MQTT session events into a presence
// tracker. Call before the broker starts.
func wirePresence(b *broker.Server, pub presence.Publisher, node string, log *slog.Logger) *presence.Tracker {
	tr := presence.New(pub, log)
	tr.SetNode(node)
	b.OnSession(func(ev broker.SessionEvent) {
		if ev.Connected {
			tr.Connected(presence.Session{
				ID: ev.ClientID, User: ev.Username, Protocol: presence.ProtocolMQTT, Transport: ev.Transport,
				Remote: ev.Remote, ConnectedAt: ev.ConnectedAt, Conn: mqttConnID(ev.Conn),
			}, ev.Takeover)
			return
		}
		tr.Disconnected(ev.ClientID, mqttConnID(ev.Conn), ev.Reason)
	})
	return tr
}

package broker

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// Message is an MQTT application message as seen by in-process publishers
// and subscribers.
type Message struct {
	// Topic is the concrete topic name (never a filter).
	Topic string
	// Payload is the message body. Subscribers must treat it as read-only:
	// the same slice is handed to every in-process subscriber.
	Payload []byte
	// QoS is the quality of service towards MQTT subscribers (0, 1 or 2).
	QoS byte
	// Retain asks the broker to keep the message as the topic's retained
	// message.
	Retain bool
	// ContentType is the MQTT 5 content type property; empty when unset.
	ContentType string
	// PayloadFormat is the MQTT 5 payload format indicator: 1 means UTF-8
	// text, 0 unspecified bytes. Only meaningful when HasPayloadFormat.
	PayloadFormat byte
	// HasPayloadFormat reports whether the payload format indicator is set.
	HasPayloadFormat bool
	// Origin is the id of the client that published the message; set by the
	// broker on delivery.
	Origin string
}

// Errors returned by Publish and Subscribe.
var (
	ErrInvalidTopic  = errors.New("invalid topic")
	ErrInvalidFilter = errors.New("invalid topic filter")
	ErrNotRunning    = errors.New("broker is not running")
)

// ValidateTopic checks that t can be published to: non-empty, valid UTF-8,
// no NUL, no wildcard characters, at most 65535 bytes.
func ValidateTopic(t string) error {
	switch {
	case t == "":
		return fmt.Errorf("%w: empty", ErrInvalidTopic)
	case len(t) > 65535:
		return fmt.Errorf("%w: longer than 65535 bytes", ErrInvalidTopic)
	case !utf8.ValidString(t):
		return fmt.Errorf("%w: not valid UTF-8", ErrInvalidTopic)
	case strings.IndexByte(t, 0) >= 0:
		return fmt.Errorf("%w: contains NUL", ErrInvalidTopic)
	case strings.ContainsAny(t, "+#"):
		return fmt.Errorf("%w: %q contains a wildcard (+ or #)", ErrInvalidTopic, t)
	}
	return nil
}

// ValidateFilter checks that f is a valid MQTT topic filter.
func ValidateFilter(f string) error {
	if f == "" || len(f) > 65535 || !utf8.ValidString(f) || strings.IndexByte(f, 0) >= 0 || !mqtt.IsValidFilter(f, false) {
		return fmt.Errorf("%w: %q", ErrInvalidFilter, f)
	}
	// mochi accepts "a/#b" style misuse in some versions; check levels.
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("%w: %q: # must be a whole last level", ErrInvalidFilter, f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("%w: %q: + must be a whole level", ErrInvalidFilter, f)
		}
	}
	return nil
}

// Publish injects m into the broker as the broker's internal client: it is
// retained if asked, and delivered to MQTT and in-process subscribers before
// Publish returns. Callers are trusted: no ACL is applied here, so callers
// that act for a user (the bridge) check permissions first.
func (s *Server) Publish(m Message) error {
	if err := ValidateTopic(m.Topic); err != nil {
		return err
	}
	if m.QoS > 2 {
		return fmt.Errorf("publish %s: qos %d out of range", m.Topic, m.QoS)
	}
	if !s.running.Load() {
		return ErrNotRunning
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: m.QoS, Retain: m.Retain},
		TopicName:   m.Topic,
		Payload:     m.Payload,
		PacketID:    uint16(m.QoS), // inline publishes are not acknowledged; mochi only needs a non-zero id for QoS>0
		Properties: packets.Properties{
			ContentType:       m.ContentType,
			PayloadFormat:     m.PayloadFormat,
			PayloadFormatFlag: m.HasPayloadFormat,
		},
	}
	if err := s.mq.InjectPacket(s.internal, pk); err != nil {
		return fmt.Errorf("publish %s: %w", m.Topic, err)
	}
	return nil
}

func messageFromPacket(pk packets.Packet) Message {
	return Message{
		Topic:            pk.TopicName,
		Payload:          pk.Payload,
		QoS:              pk.FixedHeader.Qos,
		Retain:           pk.FixedHeader.Retain,
		ContentType:      pk.Properties.ContentType,
		PayloadFormat:    pk.Properties.PayloadFormat,
		HasPayloadFormat: pk.Properties.PayloadFormatFlag,
		Origin:           pk.Origin,
	}
}

// Subscribe registers fn for messages on topics matching filter and returns
// a function that removes the subscription. fn runs on the publisher's
// goroutine and must not block. Retained messages are not replayed to fn;
// use Retained for that. Topics starting with $ are only delivered to
// filters that name the $ level explicitly, as MQTT requires.
func (s *Server) Subscribe(filter string, fn func(Message)) (cancel func(), err error) {
	if err := ValidateFilter(filter); err != nil {
		return nil, err
	}
	if fn == nil {
		return nil, errors.New("subscribe: nil handler")
	}
	var ready atomic.Bool
	wildFirst := filter[0] == '+' || filter[0] == '#'
	handler := func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		if !ready.Load() {
			return // not registered yet, or cancelled
		}
		if wildFirst && strings.HasPrefix(pk.TopicName, "$") {
			return // [MQTT-4.7.2-1]; mochi does not apply it to inline subscriptions
		}
		fn(messageFromPacket(pk))
	}
	filters := []string{filter}
	// mochi's inline subscriptions miss the parent level of "a/#": subscribe
	// to "a" as well so that "a/#" matches "a" as MQTT requires.
	if strings.HasSuffix(filter, "/#") {
		filters = append(filters, filter[:len(filter)-2])
	}
	ids := make([]int, len(filters))
	for i, f := range filters {
		ids[i] = int(s.subIDs.Add(1))
		// Straight into the topic index: mochi's Server.Subscribe would
		// first copy every retained message the filter matches for a
		// replay that is not wanted here (~280ms for "#" with 20,000
		// retained messages), and its hooks do nothing for the inline
		// client.
		s.mq.Topics.InlineSubscribe(mqtt.InlineSubscription{
			Subscription: packets.Subscription{Filter: f, Identifier: ids[i]},
			Handler:      handler,
		})
	}
	ready.Store(true)
	var once atomicOnce
	return func() {
		if once.do() {
			ready.Store(false)
			for i, f := range filters {
				_ = s.mq.Unsubscribe(f, ids[i])
			}
		}
	}, nil
}

// atomicOnce is a tiny lock-free once for cancel functions.
type atomicOnce struct{ done atomic.Bool }

func (o *atomicOnce) do() bool { return o.done.CompareAndSwap(false, true) }

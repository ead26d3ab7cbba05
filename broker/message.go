package broker

import (
	"errors"
	"fmt"
	"strings"
	"time"
	"unsafe"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
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
	ErrInvalidTopic  = topic.ErrInvalidName
	ErrInvalidFilter = topic.ErrInvalidFilter
	ErrNotRunning    = errors.New("broker is not running")
)

// ValidateTopic checks that t can be published to (see topic.ValidName).
func ValidateTopic(t string) error { return topic.ValidName(t) }

// ValidateFilter checks that f is a valid MQTT topic filter.
func ValidateFilter(f string) error { return topic.ValidFilter(f) }

// IsReservedTopic reports whether topic lies in a namespace only the broker
// may publish to ($SYS, $presence, $sockmq).
func IsReservedTopic(t string) bool { return topic.BrokerOnly(t) }

// ReservedClientIDPrefix starts the client ids MQTT clients may not use:
// they are kept for the broker and for bridge sessions.
const ReservedClientIDPrefix = topic.ReservedClientIDPrefix

// IsReservedClientID reports whether id may not be used by an MQTT client.
func IsReservedClientID(id string) bool { return topic.ReservedClientID(id) }

// msg is an application message inside the engine. It is immutable once
// routed and shared by every queue and retained slot holding it (one msg,
// many queue entries); the store keeps its body once too (ref).
//
// Topic and payload live in ONE allocation: topic is a string view of its
// first bytes and the payload (plen bytes) follows it, read with payload().
// Build messages with newBody so that this holds. The struct is kept at 80
// bytes (TestStoredSizes), since 100,000s of them may be retained or queued.
type msg struct {
	topic   string // never empty; its bytes start the message's allocation
	origin  string // publisher's client id ("" for the broker itself)
	props   *msgProps
	created int64 // unix milliseconds
	expiry  int64 // unix seconds; 0 = never
	ref     store.BodyRef
	plen    uint32 // payload length
	qos     byte   // as published
	retain  bool   // as published
}

// newBody returns a msg whose topic and payload are copied into one
// allocation; the caller fills in the other fields.
func newBody(t string, payload []byte) *msg {
	n := len(t) + len(payload)
	if n == 0 {
		return &msg{}
	}
	buf := make([]byte, n)
	copy(buf, t)
	copy(buf[len(t):], payload)
	// The topic keeps the allocation's start, so the payload behind it
	// stays reachable even when the topic is empty.
	return &msg{topic: unsafe.String(&buf[0], len(t)), plen: uint32(len(payload))}
}

// payload returns the message body (read-only; nil when empty). Its
// capacity equals its length, so an append never writes into the shared
// allocation.
func (m *msg) payload() []byte {
	if m.plen == 0 {
		return nil
	}
	base := unsafe.Pointer(unsafe.StringData(m.topic))
	return unsafe.Slice((*byte)(unsafe.Add(base, len(m.topic))), m.plen)
}

// msgProps are the MQTT 5 properties a message carries to subscribers.
type msgProps struct {
	contentType      string
	responseTopic    string
	correlation      []byte
	user             []packets.UserProperty
	payloadFormat    byte
	hasPayloadFormat bool
}

// internalOrigin is the origin of messages the broker publishes itself.
const internalOrigin = topic.Sockmq

func (m *msg) message() Message {
	out := Message{Topic: m.topic, Payload: m.payload(), QoS: m.qos, Retain: m.retain, Origin: m.origin}
	if p := m.props; p != nil {
		out.ContentType, out.PayloadFormat, out.HasPayloadFormat = p.contentType, p.payloadFormat, p.hasPayloadFormat
	}
	return out
}

// expired reports whether m has expired at now (unix seconds).
func (m *msg) expired(now int64) bool { return m.expiry != 0 && now >= m.expiry }

// record converts m for the store.
func (m *msg) record() *store.Message {
	r := &store.Message{Topic: m.topic, Payload: m.payload(), QoS: m.qos, Retain: m.retain, Created: m.created, Expiry: m.expiry, Origin: m.origin}
	if p := m.props; p != nil {
		r.ContentType, r.ResponseTopic, r.CorrelationData = p.contentType, p.responseTopic, p.correlation
		r.PayloadFormat, r.HasPayloadFormat = p.payloadFormat, p.hasPayloadFormat
		for _, u := range p.user {
			r.User = append(r.User, store.UserProperty{Key: u.Key, Value: u.Val})
		}
	}
	return r
}

// msgFromRecord rebuilds a message loaded from the store.
func msgFromRecord(r *store.Message, refs int32) *msg {
	m := newBody(r.Topic, r.Payload)
	m.origin, m.created, m.expiry, m.qos, m.retain = r.Origin, r.Created, r.Expiry, r.QoS, r.Retain
	m.ref = store.RestoredRef(r.ID, refs)
	if r.ContentType != "" || r.ResponseTopic != "" || len(r.CorrelationData) > 0 || r.HasPayloadFormat || len(r.User) > 0 {
		p := &msgProps{contentType: r.ContentType, responseTopic: r.ResponseTopic, correlation: r.CorrelationData,
			payloadFormat: r.PayloadFormat, hasPayloadFormat: r.HasPayloadFormat}
		for _, u := range r.User {
			p.user = append(p.user, packets.UserProperty{Key: u.Key, Val: u.Value})
		}
		m.props = p
	}
	return m
}

// newMsg copies what it keeps from a decoded PUBLISH (whose fields alias
// the read buffer). One allocation holds topic and payload.
func newMsg(t string, pk *packets.Packet, origin string, now time.Time, maxExpiry time.Duration) *msg {
	m := newBody(t, pk.Payload)
	m.origin, m.created = origin, now.UnixMilli()
	m.qos, m.retain = pk.FixedHeader.Qos, pk.FixedHeader.Retain
	p := &pk.Properties
	if p.ContentType != "" || p.ResponseTopic != "" || len(p.CorrelationData) > 0 || p.PayloadFormatFlag || len(p.User) > 0 {
		mp := &msgProps{
			contentType: strings.Clone(p.ContentType), responseTopic: strings.Clone(p.ResponseTopic),
			payloadFormat: p.PayloadFormat, hasPayloadFormat: p.PayloadFormatFlag,
		}
		if len(p.CorrelationData) > 0 {
			mp.correlation = append([]byte(nil), p.CorrelationData...)
		}
		for _, u := range p.User {
			mp.user = append(mp.user, packets.UserProperty{Key: strings.Clone(u.Key), Val: strings.Clone(u.Val)})
		}
		m.props = mp
	}
	m.expiry = expiryOf(now, p.MessageExpiryInterval, maxExpiry)
	return m
}

// expiryOf combines an MQTT 5 message expiry interval (seconds, 0 = none)
// with limits.max_message_expiry into an absolute unix second (0 = never).
func expiryOf(now time.Time, interval uint32, maxExpiry time.Duration) int64 {
	d := time.Duration(interval) * time.Second
	if maxExpiry > 0 && (d == 0 || maxExpiry < d) {
		d = maxExpiry
	}
	if d == 0 {
		return 0
	}
	return now.Add(d).Unix()
}

// fromMessage builds an engine message for Server.Publish (topic and
// payload are copied: the caller may reuse its slice).
func fromMessage(m Message, origin string, now time.Time, maxExpiry time.Duration) *msg {
	out := newBody(m.Topic, m.Payload)
	out.origin, out.created, out.qos, out.retain = origin, now.UnixMilli(), m.QoS, m.Retain
	if m.ContentType != "" || m.HasPayloadFormat {
		out.props = &msgProps{contentType: m.ContentType, payloadFormat: m.PayloadFormat, hasPayloadFormat: m.HasPayloadFormat}
	}
	out.expiry = expiryOf(now, 0, maxExpiry)
	return out
}

// checkPublish validates an in-process publish.
func checkPublish(m Message) error {
	if err := topic.ValidName(m.Topic); err != nil {
		return err
	}
	if m.QoS > 2 {
		return fmt.Errorf("publish %s: qos %d out of range", m.Topic, m.QoS)
	}
	return nil
}

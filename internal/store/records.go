package store

import "encoding/binary"

// recordVersion is the first byte of every record value; a later format
// gets a new number and decoders keep reading the old ones.
const recordVersion = 1

// UserProperty is an MQTT 5 user property.
type UserProperty struct{ Key, Value string }

// Message is a stored application message (a message body).
type Message struct {
	// ID is the body's key, assigned by the store on its first reference.
	ID      uint64
	Topic   string
	Payload []byte
	QoS     byte
	Retain  bool
	// Created is when the broker received it (unix milliseconds).
	Created int64
	// Expiry is when it expires (unix seconds); 0 means never.
	Expiry int64
	// Origin is the client id of the publisher.
	Origin string
	// MQTT 5 properties carried to subscribers.
	ContentType      string
	ResponseTopic    string
	CorrelationData  []byte
	PayloadFormat    byte
	HasPayloadFormat bool
	User             []UserProperty
}

const (
	msgRetain = 1 << iota
	msgHasFormat
)

func (m *Message) encode(e *enc) {
	e.u8(recordVersion)
	var f byte
	if m.Retain {
		f |= msgRetain
	}
	if m.HasPayloadFormat {
		f |= msgHasFormat
	}
	e.u8(f)
	e.u8(m.QoS)
	e.u8(m.PayloadFormat)
	e.iv(m.Created)
	e.iv(m.Expiry)
	e.str(m.Topic)
	e.bytes(m.Payload)
	e.str(m.Origin)
	e.str(m.ContentType)
	e.str(m.ResponseTopic)
	e.bytes(m.CorrelationData)
	e.uv(uint64(len(m.User)))
	for _, u := range m.User {
		e.str(u.Key)
		e.str(u.Value)
	}
}

func (m *Message) decode(d *dec) {
	if v := d.u8(); v != recordVersion {
		d.fail()
		return
	}
	f := d.u8()
	m.Retain, m.HasPayloadFormat = f&msgRetain != 0, f&msgHasFormat != 0
	m.QoS = d.u8()
	m.PayloadFormat = d.u8()
	m.Created = d.iv()
	m.Expiry = d.iv()
	m.Topic = d.str()
	m.Payload = d.bytes()
	m.Origin = d.str()
	m.ContentType = d.str()
	m.ResponseTopic = d.str()
	m.CorrelationData = d.bytes()
	n := d.uv()
	if n > uint64(len(d.b)) {
		d.fail()
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		m.User = append(m.User, UserProperty{Key: d.str(), Value: d.str()})
	}
}

// Will is a session's last will.
type Will struct {
	Message
	// Delay is the MQTT 5 will delay in seconds.
	Delay uint32
	// ExpiryInterval is the will's MQTT 5 message expiry in seconds,
	// counted from when it is published; 0 = none.
	ExpiryInterval uint32
}

// NeverExpires is the session expiry interval of a session kept until the
// client cleans it (MQTT 3.1.1 clean session = false).
const NeverExpires = ^uint32(0)

// Session is a persistent session (one that outlives its connection).
type Session struct {
	ClientID string
	// Owner is the authenticated user name that owns the session; empty
	// for the anonymous identity.
	Owner string
	// ProtocolVersion is 3, 4 or 5.
	ProtocolVersion byte
	// Expiry is the session expiry interval in seconds, or NeverExpires.
	Expiry uint32
	// DisconnectedAt is when the last connection ended (unix
	// milliseconds); zero while connected, so after a crash it is zero.
	DisconnectedAt int64
	// Will is the pending will; nil when none.
	Will *Will
}

func (s *Session) encode(e *enc) {
	e.u8(recordVersion)
	e.u8(s.ProtocolVersion)
	e.uv(uint64(s.Expiry))
	e.iv(s.DisconnectedAt)
	e.str(s.Owner)
	if s.Will == nil {
		e.u8(0)
		return
	}
	e.u8(1)
	e.uv(uint64(s.Will.Delay))
	e.uv(uint64(s.Will.ExpiryInterval))
	s.Will.Message.encode(e)
}

func (s *Session) decode(d *dec) {
	if v := d.u8(); v != recordVersion {
		d.fail()
		return
	}
	s.ProtocolVersion = d.u8()
	s.Expiry = uint32(d.uv())
	s.DisconnectedAt = d.iv()
	s.Owner = d.str()
	if d.u8() == 1 {
		w := &Will{}
		w.Delay = uint32(d.uv())
		w.ExpiryInterval = uint32(d.uv())
		w.Message.decode(d)
		s.Will = w
	}
}

// Subscription is a persistent session's subscription.
type Subscription struct {
	Filter            string
	QoS               byte
	NoLocal           bool
	RetainAsPublished bool
	RetainHandling    byte
	// ID is the MQTT 5 subscription identifier; 0 when none.
	ID uint32
}

const (
	subNoLocal = 1 << iota
	subRAP
)

func (s *Subscription) encode(e *enc) {
	e.u8(recordVersion)
	e.u8(s.QoS)
	var f byte
	if s.NoLocal {
		f |= subNoLocal
	}
	if s.RetainAsPublished {
		f |= subRAP
	}
	e.u8(f)
	e.u8(s.RetainHandling)
	e.uv(uint64(s.ID))
}

func (s *Subscription) decode(d *dec) {
	if v := d.u8(); v != recordVersion {
		d.fail()
		return
	}
	s.QoS = d.u8()
	f := d.u8()
	s.NoLocal, s.RetainAsPublished = f&subNoLocal != 0, f&subRAP != 0
	s.RetainHandling = d.u8()
	s.ID = uint32(d.uv())
}

// Outbound states of a queued QoS 1/2 message.
const (
	// OutQueued: not sent yet (first delivery goes out with DUP=0).
	OutQueued byte = iota
	// OutSent: PUBLISH sent at least once (resent with DUP=1).
	OutSent
	// OutReleased: QoS 2, PUBREC received and PUBREL sent; only PUBREL is
	// ever sent again [MQTT-4.3.3-7].
	OutReleased
)

// OutEntry is a QoS 1/2 message queued for, or in flight to, a persistent
// session.
type OutEntry struct {
	// Seq orders a session's entries (delivery order).
	Seq uint64
	// PacketID is the id the message is (or will be) sent with.
	PacketID uint16
	// QoS is the delivery QoS (1 or 2).
	QoS byte
	// State is OutQueued, OutSent or OutReleased.
	State byte
	// Retain is the RETAIN flag to send (retain as published, or a
	// retained message sent on subscribe).
	Retain bool
	// SubIDs are the subscription identifiers to send.
	SubIDs []uint32
	// MsgID is the stored body's id.
	MsgID uint64
}

func (o *OutEntry) encode(e *enc) {
	e.u8(recordVersion)
	e.uv(uint64(o.PacketID))
	e.u8(o.QoS)
	e.u8(o.State)
	r := byte(0)
	if o.Retain {
		r = 1
	}
	e.u8(r)
	e.uv(o.MsgID)
	e.uv(uint64(len(o.SubIDs)))
	for _, id := range o.SubIDs {
		e.uv(uint64(id))
	}
}

func (o *OutEntry) decode(d *dec) {
	if v := d.u8(); v != recordVersion {
		d.fail()
		return
	}
	o.PacketID = uint16(d.uv())
	o.QoS = d.u8()
	o.State = d.u8()
	o.Retain = d.u8() == 1
	o.MsgID = d.uv()
	n := d.uv()
	if n > uint64(len(d.b)) {
		d.fail()
		return
	}
	for i := uint64(0); i < n && d.err == nil; i++ {
		o.SubIDs = append(o.SubIDs, uint32(d.uv()))
	}
}

// Keys.

func clientPrefix(id string) []byte { return append([]byte(id), 0) }

func subKey(id, filter string) []byte { return append(clientPrefix(id), filter...) }

func outKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(clientPrefix(id), seq)
}

func inKey(id string, pid uint16) []byte { return binary.BigEndian.AppendUint16(clientPrefix(id), pid) }

func bodyKey(id uint64) []byte { return binary.BigEndian.AppendUint64(nil, id) }

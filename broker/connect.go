package broker

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/xid"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// Values the broker advertises in its MQTT 5 CONNACK.
const (
	// serverReceiveMax is how many unacknowledged QoS 1/2 publishes a
	// client may have in flight towards the broker.
	serverReceiveMax = 1024
	// topicAliasMax is the number of topic aliases a client may define.
	topicAliasMax = 64
	// defaultSendWindow bounds the QoS 1/2 messages in flight to an MQTT
	// 3.1.1 client (MQTT 5 clients say how many with Receive Maximum).
	defaultSendWindow = 256
)

// safeDecode runs a mochi decoder, turning a panic on malformed input into
// a malformed-packet error.
func safeDecode(fn func([]byte) error, body []byte) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v", packets.ErrMalformedPacket, r)
		}
	}()
	return fn(body)
}

// v3Code maps an MQTT 5 CONNACK reason to the MQTT 3.1.1 return code.
func v3Code(c byte) byte {
	switch c {
	case packets.ErrUnsupportedProtocolVersion.Code:
		return 0x01
	case packets.ErrClientIdentifierNotValid.Code:
		return 0x02
	case packets.ErrServerUnavailable.Code, packets.ErrServerBusy.Code, packets.ErrQuotaExceeded.Code:
		return 0x03
	case packets.ErrBadUsernameOrPassword.Code:
		return 0x04
	default:
		return 0x05 // not authorized
	}
}

// refuse answers CONNECT with a failure CONNACK and ends the connection.
// The refusal is counted by reason and logged.
func (c *conn) refuse(code packets.Code, why string, attrs ...any) error {
	c.s.log.Info("connection refused: "+why, append([]any{"client", c.clientID, "remote", c.remote, "reason", code.Reason}, attrs...)...)
	return c.refuseQuiet(code)
}

// refuseQuiet is refuse for callers that log themselves.
func (c *conn) refuseQuiet(code packets.Code) error {
	c.cause.CompareAndSwap(nil, &endCause{err: code, reason: ReasonWill})
	c.state.Store(stClosing)
	c.sendRefusal(code)
	return nil
}

// sendRefusal queues the failure CONNACK, counts it, and closes the
// connection once it is written (or after a second).
func (c *conn) sendRefusal(code packets.Code) {
	send := code.Code
	if c.version < 5 {
		send = v3Code(code.Code)
	}
	b, _ := encode((&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: c.version, ReasonCode: send}).ConnackEncode)
	c.s.metrics.refused(connackReason(code.Code))
	c.wmu.Lock()
	if !c.closed {
		c.out = append(c.out, outItem{b: b})
	}
	c.closeAfter = true
	c.wmu.Unlock()
	c.kick()
	c.s.clock.closeLater(c, time.Second)
}

func connackReason(code byte) string {
	switch code {
	case 0x04, 0x86:
		return "bad_credentials"
	case 0x05, 0x87:
		return "not_authorized"
	case 0x02, 0x85:
		return "client_id"
	case 0x03, 0x88, 0x89, 0x97:
		return "server_busy"
	case 0x01, 0x84:
		return "protocol_version"
	default:
		return "protocol"
	}
}

// validateConnect checks what mochi's ConnectValidate checks, except that a
// will may have an empty payload (MQTT allows it).
func validateConnect(pk *packets.Packet) packets.Code {
	name := pk.Connect.ProtocolName
	switch {
	case bytes.Equal(name, []byte("MQTT")):
		if pk.ProtocolVersion != 4 && pk.ProtocolVersion != 5 {
			return packets.ErrUnsupportedProtocolVersion
		}
	case bytes.Equal(name, []byte("MQIsdp")):
		if pk.ProtocolVersion != 3 {
			return packets.ErrUnsupportedProtocolVersion
		}
	default:
		return packets.ErrProtocolViolationProtocolName
	}
	switch {
	case pk.ReservedBit != 0:
		return packets.ErrProtocolViolationReservedBit
	case pk.Connect.PasswordFlag && pk.ProtocolVersion < 5 && !pk.Connect.UsernameFlag:
		return packets.ErrProtocolViolationPasswordNoFlag // [MQTT-3.1.2-22]
	case pk.Connect.WillFlag && pk.Connect.WillQos > 2:
		return packets.ErrProtocolViolationQosOutOfRange
	case !pk.Connect.WillFlag && (pk.Connect.WillRetain || pk.Connect.WillQos != 0):
		return packets.ErrProtocolViolationWillFlagSurplusRetain
	}
	return packets.CodeSuccess
}

// handleConnect authenticates the client, attaches its session and
// answers CONNACK.
func (c *conn) handleConnect(fh packets.FixedHeader, body []byte) error {
	s := c.s
	pk := getPacket()
	defer putPacket(pk)
	pk.FixedHeader = fh
	if err := safeDecode(pk.ConnectDecode, body); err != nil {
		if pk.ProtocolVersion == 5 {
			c.version = 5
			return c.refuse(packets.ErrMalformedPacket, "malformed CONNECT", "error", err)
		}
		s.metrics.refused("protocol")
		return fmt.Errorf("malformed CONNECT: %w", err)
	}
	c.version = pk.ProtocolVersion
	if code := validateConnect(pk); code != packets.CodeSuccess {
		if code == packets.ErrUnsupportedProtocolVersion {
			if c.version != 5 {
				c.version = 4 // answer in a version the client understands
			}
			return c.refuse(code, "unsupported protocol version", "version", pk.ProtocolVersion)
		}
		return c.refuse(code, "invalid CONNECT")
	}
	c.clientID = strings.Clone(pk.Connect.ClientIdentifier)
	props := &pk.Properties

	// Client id.
	assigned := false
	if c.clientID == "" {
		if c.version < 5 && !pk.Connect.Clean {
			return c.refuse(packets.ErrClientIdentifierNotValid, "empty client id with a persistent session") // [MQTT-3.1.3-8]
		}
		c.clientID = "auto-" + xid.New().String()
		assigned = true
	}
	if topic.ReservedClientID(c.clientID) {
		return c.refuse(packets.ErrClientIdentifierNotValid, "reserved client id")
	}
	if props.AuthenticationMethod != "" {
		return c.refuse(packets.ErrBadAuthenticationMethod, "enhanced authentication is not supported", "method", props.AuthenticationMethod)
	}

	// Keepalive.
	lim := s.cfg.Limits
	ka := time.Duration(pk.Connect.Keepalive) * time.Second
	serverKA := false
	if lim.KeepaliveMax > 0 && (ka == 0 || ka > lim.KeepaliveMax) {
		if c.version < 5 {
			return c.refuse(packets.ErrClientIdentifierNotValid, "keepalive above limits.keepalive_max", "keepalive", ka)
		}
		ka, serverKA = lim.KeepaliveMax, true
	}
	if lim.KeepaliveMin > 0 && ka > 0 && ka < lim.KeepaliveMin && c.version == 5 {
		ka, serverKA = lim.KeepaliveMin, true
	}
	c.keepalive = ka

	// Authentication.
	user := ""
	if pk.Connect.UsernameFlag {
		user = string(pk.Connect.Username)
	}
	c.identity = auth.Identity{Username: user, ClientID: c.clientID, Anonymous: user == ""}
	if s.auth != nil {
		res := s.auth.Authenticate(user, pk.Connect.Password, pk.Connect.UsernameFlag && user != "", pk.Connect.PasswordFlag)
		if code, ok := connackFor(res); !ok {
			return c.refuseLogin(code, user)
		}
	}

	// Will.
	var will *pendingWill
	if pk.Connect.WillFlag {
		wt := pk.Connect.WillTopic
		if topic.ValidName(wt) != nil || topic.BrokerOnly(wt) || !s.mayWrite(c.identity, wt) {
			return c.refuse(packets.ErrNotAuthorized, "will topic not permitted", "user", user, "topic", wt)
		}
		wp := &pk.Connect.WillProperties
		wm := newBody(wt, pk.Connect.WillPayload)
		wm.origin, wm.qos, wm.retain, wm.created = c.clientID, pk.Connect.WillQos, pk.Connect.WillRetain, time.Now().UnixMilli()
		if c.version == 5 {
			if wp.ContentType != "" || wp.ResponseTopic != "" || len(wp.CorrelationData) > 0 || wp.PayloadFormatFlag || len(wp.User) > 0 {
				mp := &msgProps{contentType: strings.Clone(wp.ContentType), responseTopic: strings.Clone(wp.ResponseTopic),
					correlation: bytes.Clone(wp.CorrelationData), payloadFormat: wp.PayloadFormat, hasPayloadFormat: wp.PayloadFormatFlag}
				for _, u := range wp.User {
					mp.user = append(mp.user, packets.UserProperty{Key: strings.Clone(u.Key), Val: strings.Clone(u.Val)})
				}
				wm.props = mp
			}
		}
		will = &pendingWill{m: wm, delay: wp.WillDelayInterval, expiryInterval: wp.MessageExpiryInterval}
	}

	// Session expiry: MQTT 5 says it; MQTT 3.1.1 persistent sessions never
	// expire (limits.max_session_expiry caps both).
	var expiry uint32
	switch {
	case c.version == 5:
		expiry = props.SessionExpiryInterval
	case !pk.Connect.Clean:
		expiry = store.NeverExpires
	}
	if max := lim.MaxSessionExpiry; max > 0 && (expiry == store.NeverExpires || time.Duration(expiry)*time.Second > max) {
		expiry = uint32(max / time.Second)
	}
	c.maxOut = props.MaximumPacketSize
	c.recvMax = props.ReceiveMaximum
	if c.version == 5 && c.recvMax == 0 {
		c.recvMax = 65535
	}

	if code, err := s.clusterClaim(c, expiry > 0, will); code != nil {
		if *code == packets.ErrNotAuthorized {
			s.limits.Hit(limitClientIDOwner, "connection refused: the client id belongs to another user on another node",
				"client", c.clientID, "user", user, "remote", c.remote)
			return c.refuseQuiet(*code)
		}
		return c.refuse(*code, "client id ownership could not be checked in the cluster", "error", err)
	}
	moved := s.handoverFetch(c, pk.Connect.Clean) // nil unless the session comes from another node
	sess, present, code := s.attach(c, pk.Connect.Clean, expiry, will)
	if code != nil {
		if *code == packets.ErrNotAuthorized {
			s.limits.Hit(limitClientIDOwner, "connection refused: the client id's session belongs to another user",
				"client", c.clientID, "user", user, "remote", c.remote)
			return c.refuseQuiet(*code)
		}
		return c.refuse(*code, "the previous connection of this client id did not end")
	}

	if s.cluster != nil {
		s.unparkOnAttach(sess)
		if moved != nil && !present {
			present = s.handoverImport(sess, c, moved)
		}
	}

	ack := &packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connack}, ProtocolVersion: c.version, SessionPresent: present}
	if c.version == 5 {
		ap := &ack.Properties
		ap.ReceiveMaximum = serverReceiveMax
		ap.TopicAliasMaximum = topicAliasMax
		ap.MaximumPacketSize = lim.MaxPacketSize
		if assigned {
			ap.AssignedClientID = c.clientID
		}
		if serverKA {
			ap.ServerKeepAlive = uint16(ka / time.Second)
			ap.ServerKeepAliveFlag = true
		}
		if expiry != props.SessionExpiryInterval {
			ap.SessionExpiryInterval = expiry
			ap.SessionExpiryIntervalFlag = true
		}
	}
	b, err := encode(ack.ConnackEncode)
	if err != nil {
		return err
	}
	c.send(b, 0)
	c.connectedAt = time.Now()
	c.state.Store(stConnected)
	s.metrics.clients.Add(1)
	s.clock.watchKeepalive(c)
	sess.mu.Lock()
	sess.lastAck, sess.stalled = time.Now().UnixNano(), false
	s.resend(sess, c)
	sess.mu.Unlock()
	s.emit(c.sessionEvent(true))
	return nil
}

// connackFor maps an authentication result to a CONNACK reason; ok is true
// when the client may connect.
func connackFor(r auth.Result) (code packets.Code, ok bool) {
	switch r {
	case auth.Allowed:
		return packets.CodeSuccess, true
	case auth.BadCredentials:
		return packets.ErrBadUsernameOrPassword, false
	default:
		return packets.ErrNotAuthorized, false
	}
}

// errTakeoverTimeout is returned when a connection being taken over does not
// end in time.
var errTakeoverTimeout = errors.New("the previous connection of this client id did not end in time")

// attach gives c its session: a new one, or the existing one (taking it
// over from a live connection of the same owner). A client id whose session
// belongs to another identity is refused (0x87), leaving that session
// untouched.
func (s *Server) attach(c *conn, clean bool, expiry uint32, will *pendingWill) (*session, bool, *packets.Code) {
	owner := c.identity.Username
	for attempt := 0; ; attempt++ {
		s.sessions.mu.Lock()
		old := s.sessions.m[c.clientID]
		if old != nil && old.owner != owner {
			s.sessions.mu.Unlock()
			code := packets.ErrNotAuthorized
			return nil, false, &code
		}
		if old != nil {
			old.mu.Lock()
			oc := old.conn
			old.mu.Unlock()
			if oc != nil {
				s.sessions.mu.Unlock()
				c.takeover = true
				oc.disconnect(&endCause{err: packets.ErrSessionTakenOver, reason: ReasonTakeover, code: packets.ErrSessionTakenOver.Code})
				select {
				case <-oc.detached:
				case <-time.After(10 * time.Second):
					s.log.Warn("takeover: previous connection did not end", "client", c.clientID)
					code := packets.ErrServerBusy
					return nil, false, &code
				}
				continue
			}
		}
		present := old != nil && !clean
		sess := old
		if old != nil && clean {
			delete(s.sessions.m, c.clientID)
			s.dropSession(old)
			sess = nil
		}
		if sess == nil {
			sess = &session{id: c.clientID, owner: owner}
			s.sessions.m[c.clientID] = sess
		}
		sess.mu.Lock()
		s.sessions.mu.Unlock()
		sess.timerGen++ // cancels a pending will or expiry
		wasPersistent := sess.persistent
		sess.conn = c
		sess.online.Store(true)
		sess.version = c.version
		sess.expiry = expiry
		sess.will = will
		sess.persistent = expiry > 0 && s.store != nil
		c.sess = sess
		switch {
		case sess.persistent:
			s.persistSession(sess, !wasPersistent)
		case wasPersistent:
			s.unpersistSession(sess)
		}
		sess.mu.Unlock()
		return sess, present, nil
	}
}

// sessionRecord is the store record of sess (the caller holds sess.mu).
func (s *Server) sessionRecord(sess *session) *store.Session {
	r := &store.Session{ClientID: sess.id, Owner: sess.owner, ProtocolVersion: sess.version, Expiry: sess.expiry}
	if sess.conn == nil && !sess.disconnectedAt.IsZero() {
		r.DisconnectedAt = sess.disconnectedAt.UnixMilli()
	}
	if w := sess.will; w != nil {
		r.Will = &store.Will{Delay: w.delay, ExpiryInterval: w.expiryInterval, Message: *w.m.record()}
	}
	return r
}

// persistSession writes sess's record; with all, also everything it holds
// (it was not stored before). The caller holds sess.mu.
func (s *Server) persistSession(sess *session, all bool) {
	rec := s.sessionRecord(sess)
	s.store.Write(func(w *store.Writer) {
		w.PutSession(rec)
		if !all {
			return
		}
		for _, sub := range sess.subs {
			w.PutSubscription(sess.id, sub.record())
		}
		sess.pending(func(e *outEntry) {
			w.CreateOut(sess.id, sess.record(e, w.Ref(&e.m.ref, e.m.record)))
		})
		for pid := range sess.in2 {
			w.PutInbound2(sess.id, pid)
		}
	})
}

// unpersistSession deletes what the store holds for sess, which no longer
// outlives its connection. The caller holds sess.mu.
func (s *Server) unpersistSession(sess *session) {
	s.store.Write(func(w *store.Writer) {
		w.DeleteSession(sess.id)
		sess.pending(func(e *outEntry) { w.Unref(&e.m.ref) })
	})
}

func (sub *subscription) record() *store.Subscription {
	return &store.Subscription{Filter: sub.filter, QoS: sub.qos, NoLocal: sub.noLocal, RetainAsPublished: sub.rap, RetainHandling: sub.rh, ID: sub.id}
}

// dropSession forgets a session for good: its subscriptions leave the
// index and its stored state is deleted. The caller removed it from the
// session table.
func (s *Server) dropSession(sess *session) {
	sess.mu.Lock()
	sess.gone = true
	sess.timerGen++
	subs := sess.subs
	sess.subs = nil
	sess.nsubs.Store(0)
	if sess.persistent {
		s.unpersistSession(sess)
		sess.persistent = false
	}
	n := sess.clearQueue()
	s.throttle.account(sess)
	sess.in2 = nil
	sess.mu.Unlock()
	s.metrics.queued.Add(-int64(n))
	for _, sub := range subs {
		if s.subs.remove(sub) {
			s.metrics.subscriptions.Add(-1)
		}
	}
}

// sessionEvent describes c for session listeners.
func (c *conn) sessionEvent(connected bool) SessionEvent {
	now := time.Now()
	return SessionEvent{
		Connected: connected, ClientID: c.clientID, Username: c.identity.Username, Remote: c.remote,
		Transport: c.transport, ProtocolVersion: c.version, Conn: c.number, ConnectedAt: c.connectedAt, At: now,
		Takeover: connected && c.takeover,
	}
}

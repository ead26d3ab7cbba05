package broker

import (
	"errors"
	"strings"
	"time"
	"unsafe"

	"github.com/sockmq/sockmq/auth"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// sockmqNamespace is the broker's own topic namespace (dropped wills,
// refused publishes and filters) and the prefix of its own client ids.
const sockmqNamespace = "$sockmq/"

// ReservedClientIDPrefix starts the ids of the broker's own clients (its
// internal publisher).
const ReservedClientIDPrefix = sockmqNamespace

// reservedTopicPrefixes are topic namespaces only the broker may publish to
// (also as a will).
var reservedTopicPrefixes = []string{"$SYS", "$presence", "$sockmq"}

// IsReservedTopic reports whether topic lies in a namespace that only the
// broker may publish to.
func IsReservedTopic(topic string) bool {
	for _, p := range reservedTopicPrefixes {
		if topic == p || (strings.HasPrefix(topic, p) && topic[len(p)] == '/') {
			return true
		}
	}
	return false
}

// IsReservedClientID reports whether id may not be used by an MQTT client:
// mochi's "inline" and every id starting with "$", which the broker keeps for
// its own clients and for bridge sessions (so no MQTT client can pose as a
// bridge socket in presence). MQTT only requires brokers to accept ids made
// of 0-9, a-z and A-Z.
func IsReservedClientID(id string) bool {
	return id == mqtt.InlineClientId || strings.HasPrefix(id, "$")
}

// policyHook enforces sockmq's connection policy and permissions on every
// MQTT client (TCP, TLS and WebSocket alike).
type policyHook struct {
	mqtt.HookBase
	s *Server
}

func (h *policyHook) ID() string { return "sockmq-policy" }

func (h *policyHook) Provides(b byte) bool {
	switch b {
	case mqtt.OnConnect, mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPacketSent, mqtt.OnPublish,
		mqtt.OnWill, mqtt.OnPublishDropped, mqtt.OnSessionEstablish, mqtt.OnPacketRead,
		mqtt.OnSessionEstablished, mqtt.OnDisconnect, mqtt.OnSubscribe, mqtt.OnRetainMessage, mqtt.OnRetainedExpired,
		mqtt.OnQosPublish, mqtt.OnPacketEncode:
		return true
	}
	return false
}

// v3Code maps an MQTT 5 CONNACK reason to the MQTT 3.1.1 return code.
func v3Code(c packets.Code) packets.Code {
	switch c {
	case packets.ErrUnsupportedProtocolVersion:
		return packets.Code{Code: 0x01}
	case packets.ErrClientIdentifierNotValid:
		return packets.Code{Code: 0x02}
	case packets.ErrServerUnavailable, packets.ErrServerBusy:
		return packets.Code{Code: 0x03}
	case packets.ErrBadUsernameOrPassword:
		return packets.Code{Code: 0x04}
	default:
		return packets.Code{Code: 0x05} // not authorized
	}
}

// refuse answers CONNECT with a failure CONNACK in the client's protocol
// version and returns the error that makes mochi close the connection.
func (h *policyHook) refuse(cl *mqtt.Client, code packets.Code) error {
	send := code
	if cl.Properties.ProtocolVersion < 5 {
		send = v3Code(code)
	}
	_ = h.s.mq.SendConnack(cl, send, false, nil)
	return code
}

// usernameOf returns the client's user name without copying. mochi never
// modifies Properties.Username after CONNECT is parsed.
func usernameOf(cl *mqtt.Client) string {
	u := cl.Properties.Username
	if len(u) == 0 {
		return ""
	}
	return unsafe.String(unsafe.SliceData(u), len(u))
}

// OnConnect runs before mochi's authentication step: it enforces the client
// id and keepalive policy, authenticates, checks the will topic and that
// the client id is not another user's session, so that each refusal
// carries its proper reason code.
func (h *policyHook) OnConnect(cl *mqtt.Client, pk packets.Packet) error {
	s := h.s
	if c, ok := cl.Net.Conn.(*trackedConn); ok {
		c.connected.Store(true)
	}
	if IsReservedClientID(cl.ID) {
		s.log.Info("connection refused: reserved client id", "client", cl.ID, "remote", cl.Net.Remote)
		return h.refuse(cl, packets.ErrClientIdentifierNotValid)
	}
	if err := h.applyKeepalive(cl); err != nil {
		return err
	}
	if s.auth != nil {
		user := string(pk.Connect.Username)
		res := s.auth.Authenticate(user, pk.Connect.Password, pk.Connect.UsernameFlag && len(pk.Connect.Username) > 0, pk.Connect.PasswordFlag)
		if code, ok := connackFor(res); !ok {
			// Rate-limited: a guessing flood must not flood the log.
			s.authLog.Hit("auth_failed", "connection refused: authentication failed",
				"client", cl.ID, "user", user, "remote", cl.Net.Remote, "reason", code.Reason)
			if res == auth.BadCredentials {
				s.slowFailedLogin(cl)
			}
			return h.refuse(cl, code)
		}
	}
	if cl.Properties.Will.Flag == 1 {
		topic := cl.Properties.Will.TopicName
		if IsReservedTopic(topic) || ValidateTopic(topic) != nil || !h.mayWrite(cl, topic) {
			s.log.Info("connection refused: will topic not permitted", "client", cl.ID, "user", usernameOf(cl), "remote", cl.Net.Remote, "topic", topic)
			return h.refuse(cl, packets.ErrNotAuthorized)
		}
	}
	if !s.claimClientID(cl) {
		s.limits.Hit(limitClientIDOwner, "connection refused: client id belongs to another user's session",
			"client", cl.ID, "user", usernameOf(cl), "remote", cl.Net.Remote)
		return h.refuse(cl, packets.ErrNotAuthorized)
	}
	return nil
}

// applyKeepalive enforces limits.keepalive_min/max.
func (h *policyHook) applyKeepalive(cl *mqtt.Client) error {
	lim := h.s.cfg.Limits
	ka := time.Duration(cl.State.Keepalive) * time.Second
	v5 := cl.Properties.ProtocolVersion == 5
	if lim.KeepaliveMax > 0 && (ka == 0 || ka > lim.KeepaliveMax) {
		if !v5 {
			h.s.log.Info("connection refused: keepalive above limits.keepalive_max", "client", cl.ID, "remote", cl.Net.Remote, "keepalive", ka)
			return h.refuse(cl, packets.ErrClientIdentifierNotValid)
		}
		cl.State.Keepalive = uint16(lim.KeepaliveMax / time.Second)
		cl.State.ServerKeepalive = true
	}
	if lim.KeepaliveMin > 0 && ka > 0 && ka < lim.KeepaliveMin && v5 {
		cl.State.Keepalive = uint16(lim.KeepaliveMin / time.Second)
		cl.State.ServerKeepalive = true
	}
	return nil
}

// OnConnectAuthenticate always allows: OnConnect has already refused every
// client that should not get in (mochi ORs this hook across hooks, and we
// register no other).
func (h *policyHook) OnConnectAuthenticate(*mqtt.Client, packets.Packet) bool { return true }

func (h *policyHook) mayWrite(cl *mqtt.Client, topic string) bool {
	if h.s.auth == nil {
		return true
	}
	return h.s.auth.Allowed(identityOf(cl), topic, auth.Write)
}

// OnACLCheck is called by mochi for publishes (write), for each subscription
// filter (read, with the filter as topic) and for each delivery (read).
func (h *policyHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if write {
		if cl.Properties.ProtocolVersion < 5 {
			return true // decided in OnPublish, see there
		}
		return !IsReservedTopic(topic) && h.mayWrite(cl, topic)
	}
	if strings.HasPrefix(topic, sockmqNamespace) {
		return false // the broker's own namespace: dropped wills, refused filters
	}
	if h.s.auth == nil {
		return true
	}
	if isFilter(topic) {
		// A subscription: accept it if it can match anything readable;
		// each delivery is checked again below.
		return h.s.auth.Subscription(identityOf(cl), topic) != auth.SubDeny
	}
	return h.s.auth.Allowed(identityOf(cl), topic, auth.Read)
}

// OnPublish refuses a publish from an MQTT 3.1.1 client the way mosquitto
// does: the message is acknowledged (3.1.1 has no way to say "not
// authorized") and dropped. mochi would disconnect the client instead.
// MQTT 5 clients were already refused in OnACLCheck with reason 0x87.
func (h *policyHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline || cl.Properties.ProtocolVersion >= 5 {
		return pk, nil
	}
	if IsReservedTopic(pk.TopicName) || !h.mayWrite(cl, pk.TopicName) {
		h.s.log.Debug("publish refused", "client", cl.ID, "user", usernameOf(cl), "topic", pk.TopicName)
		return pk, packets.CodeSuccessIgnore
	}
	return pk, nil
}

// refusedTopic replaces topics that mochi would drop without an answer.
const refusedTopic = sockmqNamespace + "refused"

// OnPacketRead makes a publish to $SYS get a proper refusal: mochi drops it
// before any ACL check without acknowledging it, which leaves a QoS 1/2
// publisher waiting forever. Renamed into a reserved namespace, it is
// refused by OnACLCheck/OnPublish like any forbidden topic.
func (h *policyHook) OnPacketRead(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	h.s.pidSwaps.swapIn(cl, &pk)
	if pk.FixedHeader.Type == packets.Publish && pk.TopicName != "" && !cl.Net.Inline &&
		!strings.ContainsAny(pk.TopicName, "+#") && !mqtt.IsValidFilter(pk.TopicName, true) {
		pk.TopicName = refusedTopic
	}
	return pk, nil
}

// OnRetainMessage schedules the expiry of a new retained message, if it
// has one, and keeps the retained index up to date.
func (h *policyHook) OnRetainMessage(_ *mqtt.Client, pk packets.Packet, r int64) {
	if r == 1 {
		h.s.expiry.trackRetained(pk)
	}
	if r != 0 {
		h.s.retainedChanged(pk.TopicName)
	}
}

// OnRetainedExpired keeps the retained index up to date when mochi's own
// expiry scan runs (when it could not be replaced by the expirer).
func (h *policyHook) OnRetainedExpired(topic string) { h.s.retainedChanged(topic) }

// OnQosPublish schedules the expiry of a message queued for a client, if it
// has one.
func (h *policyHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, _ int64, _ int) {
	if pk.FixedHeader.Type == packets.Publish {
		h.s.expiry.trackInflight(cl.ID, pk)
	}
}

// OnPacketEncode puts the client's packet id back on a SUBACK/UNSUBACK
// (see packetIDSwaps) and gives filters refused by a quota their MQTT 5
// reason code.
func (h *policyHook) OnPacketEncode(cl *mqtt.Client, pk packets.Packet) packets.Packet {
	h.s.pidSwaps.swapOut(cl, &pk)
	if pk.FixedHeader.Type == packets.Suback {
		h.s.markQuotaRefusals(cl, &pk)
	}
	return pk
}

// isFilter reports whether s is a subscription filter rather than a topic
// name: delivered topics never contain wildcards, and shared subscriptions
// start with $share/.
func isFilter(s string) bool {
	return strings.ContainsAny(s, "+#") || strings.HasPrefix(s, "$share/")
}

// droppedWillTopic is where a will that may no longer be sent is redirected:
// mochi offers no way to cancel a will from its OnWill hook, so it goes to a
// reserved topic that no client may read and that wildcards never match.
const droppedWillTopic = sockmqNamespace + "dropped-will"

// OnWill re-checks the will topic when the will is about to be sent:
// permissions may have changed since CONNECT.
func (h *policyHook) OnWill(cl *mqtt.Client, will mqtt.Will) (mqtt.Will, error) {
	h.s.willGuard.markHandled(cl)
	if will.TopicName == droppedWillTopic {
		return will, nil
	}
	// A takeover continues the session: a delayed will must not be sent
	// (MQTT 5 3.1.3.2.2). mochi cancels it when the new connection is
	// established, but the old connection may schedule it just after that.
	if will.WillDelayInterval > 0 && errors.Is(cl.StopCause(), packets.ErrSessionTakenOver) {
		return dropWill(will), nil
	}
	if IsReservedTopic(will.TopicName) || !h.mayWrite(cl, will.TopicName) {
		h.s.log.Info("will dropped: topic no longer permitted", "client", cl.ID, "user", usernameOf(cl), "topic", will.TopicName)
		return dropWill(will), nil
	}
	return will, nil
}

func dropWill(w mqtt.Will) mqtt.Will {
	w.TopicName, w.Retain, w.Payload, w.User = droppedWillTopic, false, nil, nil
	return w
}

// OnPacketSent counts refused connections by their CONNACK reason, and
// replays retained messages once a SUBACK is written.
func (h *policyHook) OnPacketSent(cl *mqtt.Client, pk packets.Packet, _ []byte) {
	switch pk.FixedHeader.Type {
	case packets.Connack:
		if pk.ReasonCode != 0 {
			h.s.metrics.refused(connackReason(pk.ReasonCode))
		}
	case packets.Suback:
		h.s.subscribed(cl, pk)
	}
}

// OnPublishDropped counts messages dropped for a full client queue.
func (h *policyHook) OnPublishDropped(*mqtt.Client, packets.Packet) {
	h.s.metrics.dropped.Inc()
}

func connackReason(code byte) string {
	switch code {
	case 0x04, 0x86:
		return "bad_credentials"
	case 0x05, 0x87:
		return "not_authorized"
	case 0x02, 0x85:
		return "client_id"
	case 0x03, 0x88, 0x89:
		return "server_busy"
	case 0x01, 0x84:
		return "protocol_version"
	default:
		return "protocol"
	}
}

// connectionEnded logs how a connection ended, in one line, and counts
// refusals that mochi does not answer with a CONNACK.
func (s *Server) connectionEnded(remote string, err error, connected bool) {
	var code packets.Code
	switch {
	case err == nil || isClosedErr(err):
		return
	case !connected && isTimeout(err):
		s.metrics.refused("connect_timeout")
		s.log.Info("connection closed: no CONNECT within limits.connect_timeout", "remote", remote, "timeout", s.cfg.Limits.ConnectTimeout)
	case errors.Is(err, packets.ErrPacketTooLarge):
		if !connected {
			s.metrics.refused("packet_too_large")
		}
		s.log.Info("connection closed: packet larger than limits.max_packet_size", "remote", remote, "max_packet_size", s.cfg.Limits.MaxPacketSize)
	case errors.As(err, &code) && !connected:
		// refused with a CONNACK: already logged and counted.
	case !connected:
		s.metrics.refused("protocol")
		s.log.Info("connection closed before CONNECT completed", "remote", remote, "error", err)
	case isTimeout(err):
		s.log.Info("connection closed: keepalive expired", "remote", remote)
	default:
		s.log.Debug("connection closed", "remote", remote, "error", err)
	}
}

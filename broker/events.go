package broker

import (
	"errors"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"
)

// Reasons a session ended, as reported in SessionEvent.Reason.
const (
	ReasonClean    = "clean"    // the client sent DISCONNECT (its will is discarded)
	ReasonWill     = "will"     // the connection ended without a clean DISCONNECT: network drop, protocol error, DISCONNECT with 0x04; the will (if any) is published
	ReasonTimeout  = "timeout"  // keepalive expired; the will (if any) is published
	ReasonTakeover = "takeover" // a new connection with the same client id replaced this one
	ReasonKicked   = "kicked"   // the broker closed it: permissions revoked
	ReasonShutdown = "shutdown" // the broker is shutting down
)

// Transport names in SessionEvent.Transport.
const (
	TransportTCP       = "tcp"
	TransportTLS       = "tls"
	TransportWebSocket = "websocket"
)

// SessionEvent reports an MQTT connection that established a session or
// ended.
type SessionEvent struct {
	// Connected is true when the session started, false when it ended.
	Connected bool
	// ClientID is the MQTT client id (assigned by the broker if the client
	// sent none).
	ClientID string
	// Username is the CONNECT user name, empty for anonymous clients.
	Username string
	// Remote is the client's address.
	Remote string
	// Transport is tcp, tls or websocket.
	Transport string
	// ProtocolVersion is 3, 4 (3.1.1) or 5.
	ProtocolVersion byte
	// Conn identifies this connection; a takeover gives the same client id
	// a new Conn.
	Conn uint64
	// ConnectedAt is when the session was established.
	ConnectedAt time.Time
	// At is when the event happened.
	At time.Time
	// Takeover is set on a connect event when the client id was connected
	// elsewhere and that connection is being replaced.
	Takeover bool
	// Reason says why a session ended (see the Reason constants).
	Reason string
}

// OnSession registers fn to receive every MQTT session event. Call it
// before Start. fn runs on the client's goroutine, in order for that client
// (connect before disconnect), after the will of an ending session was
// published; it must not block for long.
func (s *Server) OnSession(fn func(SessionEvent)) {
	s.listenersMu.Lock()
	s.listeners = append(s.listeners, fn)
	s.listenersMu.Unlock()
}

func (s *Server) emit(ev SessionEvent) {
	s.listenersMu.Lock()
	ls := s.listeners
	s.listenersMu.Unlock()
	for _, fn := range ls {
		fn(ev)
	}
}

func transportOf(listener string) string {
	switch listener {
	case listenerMQTTTLS:
		return TransportTLS
	case listenerWS:
		return TransportWebSocket
	default:
		return TransportTCP
	}
}

// SessionCount is the number of MQTT sessions currently connected.
func (s *Server) SessionCount() int { return int(s.metrics.clients.Load()) }

// Connected reports whether an MQTT session with client id is currently
// connected (its end, which comes after its will, not yet reported).
func (s *Server) Connected(id string) bool {
	sess := s.sessions.get(id)
	return sess != nil && sess.online.Load()
}

// connectionRefused logs and counts a connection that ended before it
// had a session.
func (s *Server) connectionRefused(c *conn, cause *endCause) {
	var code packets.Code
	switch {
	case errors.Is(cause.err, errConnectTimeout):
		s.metrics.refused("connect_timeout")
		s.log.Info("connection closed: no CONNECT within limits.connect_timeout", "remote", c.remote, "timeout", s.cfg.Limits.ConnectTimeout)
	case errors.Is(cause.err, errTooLarge):
		s.metrics.refused("packet_too_large")
		s.log.Info("connection closed: packet larger than limits.max_packet_size", "remote", c.remote, "max_packet_size", s.cfg.Limits.MaxPacketSize)
	case errors.As(cause.err, &code):
		// refused with a CONNACK: already logged and counted
	case errors.Is(cause.err, errShutdown), errors.Is(cause.err, errConnectionLost):
	default:
		s.metrics.refused("protocol")
		s.log.Info("connection closed before CONNECT completed", "remote", c.remote, "error", cause.err)
	}
}

// logEnd logs how an established connection ended.
func (s *Server) logEnd(c *conn, cause *endCause) {
	switch {
	case errors.Is(cause.err, errTooLarge):
		s.log.Info("connection closed: packet larger than limits.max_packet_size", "client", c.clientID, "remote", c.remote, "max_packet_size", s.cfg.Limits.MaxPacketSize)
	case cause.reason == ReasonTimeout:
		s.log.Info("connection closed: keepalive expired", "client", c.clientID, "remote", c.remote)
	default:
		s.log.Debug("client disconnected", "client", c.clientID, "remote", c.remote, "reason", cause.reason, "error", cause.err)
	}
}

package broker

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
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
	// a new Conn. Zero on a disconnect event means "whatever connection the
	// client id has": a takeover failed half-way and both are gone.
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

// sessionTracker assigns connection ids and turns mochi's connect and
// disconnect hooks into SessionEvents.
type sessionTracker struct {
	next      atomic.Uint64
	mu        sync.Mutex
	conns     map[*mqtt.Client]*SessionEvent
	listeners []func(SessionEvent)
}

// OnSession registers fn to receive every MQTT session event. Call it
// before Start. fn runs on the client's goroutine, in order for that client
// (connect before disconnect), after the will of an ending session was
// published; it must not block for long.
func (s *Server) OnSession(fn func(SessionEvent)) {
	s.sessions.mu.Lock()
	s.sessions.listeners = append(s.sessions.listeners, fn)
	s.sessions.mu.Unlock()
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

func (t *sessionTracker) emit(ev SessionEvent) {
	t.mu.Lock()
	ls := t.listeners
	t.mu.Unlock()
	for _, fn := range ls {
		fn(ev)
	}
}

// established records a new session; takeover says whether it replaces a
// live connection.
func (t *sessionTracker) established(cl *mqtt.Client, takeover bool) {
	now := time.Now()
	ev := &SessionEvent{
		Connected: true, ClientID: cl.ID, Username: string(cl.Properties.Username), Remote: cl.Net.Remote,
		Transport: transportOf(cl.Net.Listener), ProtocolVersion: cl.Properties.ProtocolVersion,
		Conn: t.next.Add(1), ConnectedAt: now, At: now, Takeover: takeover,
	}
	t.mu.Lock()
	if t.conns == nil {
		t.conns = make(map[*mqtt.Client]*SessionEvent)
	}
	t.conns[cl] = ev
	t.mu.Unlock()
	t.emit(*ev)
}

// ended reports the end of cl's session, if it had one.
func (t *sessionTracker) ended(cl *mqtt.Client) {
	t.mu.Lock()
	ev, ok := t.conns[cl]
	delete(t.conns, cl)
	t.mu.Unlock()
	if !ok {
		return // never established (refused), or restored from the store
	}
	out := *ev
	out.Connected, out.Takeover, out.At = false, false, time.Now()
	out.Reason = endReason(cl)
	t.emit(out)
}

func endReason(cl *mqtt.Client) string {
	cause := cl.StopCause()
	var code packets.Code
	switch {
	case cl.IsTakenOver() || errors.Is(cause, packets.ErrSessionTakenOver):
		return ReasonTakeover
	case cause == nil || errors.Is(cause, packets.CodeDisconnect):
		return ReasonClean
	case errors.Is(cause, packets.ErrServerShuttingDown):
		return ReasonShutdown
	case errors.Is(cause, packets.ErrNotAuthorized):
		return ReasonKicked
	case isTimeout(cause):
		return ReasonTimeout
	case errors.As(cause, &code) && code == packets.ErrKeepAliveTimeout:
		return ReasonTimeout
	default:
		return ReasonWill
	}
}

// OnSessionEstablished reports the new session.
func (h *policyHook) OnSessionEstablished(cl *mqtt.Client, _ packets.Packet) {
	if cl.Net.Inline {
		return
	}
	h.s.releaseClientID(cl) // mochi has registered the session
	// Every established session reaches OnDisconnect, which forgets it.
	h.s.willGuard.remember(cl)
	h.s.sessions.established(cl, h.s.takeovers.LoadAndDelete(cl))
}

// OnDisconnect reports the end of a session.
func (h *policyHook) OnDisconnect(cl *mqtt.Client, err error, _ bool) {
	if cl.Net.Inline {
		return
	}
	h.s.pidSwaps.forget(cl)
	h.s.subs.forget(cl)
	h.s.releaseClientID(cl)
	h.s.publishMissedWill(cl, err)
	if h.s.takeovers.LoadAndDelete(cl) {
		// This connection took a live session over but failed before it was
		// established: the session it replaced is gone too.
		h.s.sessions.emit(SessionEvent{ClientID: cl.ID, At: time.Now(), Reason: ReasonWill})
		return
	}
	h.s.sessions.ended(cl)
}

// clientSet is a small concurrent set of clients.
type clientSet struct{ m sync.Map }

func (c *clientSet) Store(cl *mqtt.Client) { c.m.Store(cl, struct{}{}) }

func (c *clientSet) LoadAndDelete(cl *mqtt.Client) bool {
	_, ok := c.m.LoadAndDelete(cl)
	return ok
}

// SessionCount is the number of MQTT sessions currently connected.
func (s *Server) SessionCount() int {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	return len(s.sessions.conns)
}

// Connected reports whether an MQTT session with client id is currently
// connected (established and not yet reported as ended, which happens after
// its will was handled). It scans every session: for diagnostics and tests,
// not for per-message paths.
func (s *Server) Connected(id string) bool {
	s.sessions.mu.Lock()
	defer s.sessions.mu.Unlock()
	for cl := range s.sessions.conns {
		if cl.ID == id {
			return true
		}
	}
	return false
}

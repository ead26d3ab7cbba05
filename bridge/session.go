package bridge

import (
	"context"
	"encoding/json"
	"time"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Session is the view of one socket that procedures and observers get. Its
// methods are safe for concurrent use and keep working (as no-ops where
// they send) after the socket closes.
type Session struct{ s *socket }

// ID returns the socket id sent in the handshake reply: "$" followed by 20
// URL-safe characters.
func (ss *Session) ID() string { return ss.s.id }

// Username returns the logged-in user, or "" while the socket is
// anonymous.
func (ss *Session) Username() string {
	if id := ss.s.identity.Load(); !id.Anonymous {
		return id.Username
	}
	return ""
}

// Authenticated reports whether the socket is logged in.
func (ss *Session) Authenticated() bool { return !ss.s.identity.Load().Anonymous }

// Remote returns the client's network address (host:port) as the HTTP
// server saw it.
func (ss *Session) Remote() string { return ss.s.remote }

// ConnectedAt returns when the WebSocket connection was accepted.
func (ss *Session) ConnectedAt() time.Time { return ss.s.connectedAt }

// Transmit sends the event to the client (a transmit, no response
// expected). data is encoded with encoding/json; nil sends no data. It
// never blocks; a socket that cannot keep up is closed as a slow consumer.
func (ss *Session) Transmit(event string, data any) error {
	var raw []byte
	if data != nil {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		raw = b
	}
	ss.s.enqueue(scproto.AppendEvent(nil, event, raw))
	return nil
}

// ProcedureFunc implements a custom procedure that clients call with
// socket.invoke(name, data). It runs on the socket's reader goroutine, so
// the socket's next message waits for it: keep it short. ctx is cancelled
// when the socket closes. The result is encoded with encoding/json as the
// response data (nil sends a response without data); a json.RawMessage is
// sent as it is, so a procedure can answer with bytes it encoded once (it
// must be valid JSON). Calls count against bridge.invoke_rate and
// bridge.invoke_burst; beyond them the client gets RateLimitError and fn
// does not run. To fail the call with
// a name the client sees, return an *Error; any other error reaches the
// client as InternalError and is logged.
type ProcedureFunc func(ctx context.Context, s *Session, data json.RawMessage) (any, error)

// CloseInfo describes how a socket ended.
type CloseInfo struct {
	// Code is the WebSocket close code: the client's when it closed, the
	// bridge's when it closed the socket, 1006 when the connection dropped
	// without a close frame.
	Code int
	// Clean is true only when the client closed the socket itself with
	// 1000 or 1001 (socket.disconnect()); pong timeouts, dropped
	// connections, slow-consumer kicks, server shutdown and errors are not
	// clean.
	Clean bool
	// Reason is the close reason text.
	Reason string
	// Open is true when the socket is still open but its session ended:
	// it lost its login while anonymous sockets are not admitted
	// (auth.allow_anonymous false). Clean is then true for a logout and
	// false when its token expired or was revoked; Code is 0. Logging in
	// again starts a new session with the same id.
	Open bool
}

// Observer is told when sockets' sessions start and end (for presence and
// last wills). A socket is a session from its handshake on, except when
// anonymous access is off: then only while it is logged in.
//
// SocketOpened is called after a successful handshake (or, with anonymous
// access off, when the socket logs in), on the socket's reader goroutine,
// before any further message of that socket is handled. SocketClosed is
// called once for every SocketOpened: after the socket has closed and left
// all its channels, or, with anonymous access off, when the open socket
// loses its login (CloseInfo.Open: logout, expired or revoked token,
// changed or deleted user); that may run on the goroutine of an auth reload
// or of a revocation. A socket that logs in again is opened again, with
// the same id. Both must return quickly.
type Observer interface {
	SocketOpened(s *Session)
	SocketClosed(s *Session, info CloseInfo)
}

// IdentityObserver is an optional extension of Observer: an Observer that
// also implements it is told when the user of an open session changes: it
// logs in, logs out, or loses its login (token expiry or revocation,
// changed or deleted user) while anonymous access is on. (With anonymous
// access off those end or start the session instead.) It may run on the
// socket's reader goroutine or on the goroutine of an auth reload or a
// revocation, and must return quickly.
type IdentityObserver interface {
	SocketIdentityChanged(s *Session)
}

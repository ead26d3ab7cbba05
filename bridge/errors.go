package bridge

import (
	"errors"
	"fmt"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Error is a SocketCluster error: it reaches the client as the object
// {"name":Name,"message":Message,...Fields}, from which socketcluster-client
// rebuilds an Error with that name and message (invoke rejections,
// subscribeFail, authError). A [ProcedureFunc] returns one to fail a call
// with a name of its choosing.
type Error struct {
	// Name is the error's class, e.g. "ForbiddenError".
	Name string
	// Message is a human-readable explanation.
	Message string
	// Fields are extra properties copied onto the client's error object.
	Fields map[string]any
}

// NewError returns an error with the given name and message.
func NewError(name, message string) *Error { return &Error{Name: name, Message: message} }

// Errorf returns an error with the given name and a formatted message.
func Errorf(name, format string, args ...any) *Error {
	return &Error{Name: name, Message: fmt.Sprintf(format, args...)}
}

// Error returns "Name: Message".
func (e *Error) Error() string { return e.Name + ": " + e.Message }

func (e *Error) wire() *scproto.Error {
	return &scproto.Error{Name: e.Name, Message: e.Message, Fields: e.Fields}
}

// Error names the bridge sends.
const (
	// ErrNameInvalidAction: a malformed request (missing channel, wrong
	// data type, a reserved event sent by the client, a second handshake).
	ErrNameInvalidAction = "InvalidActionError"
	// ErrNameInvalidChannel: the channel name cannot be an MQTT topic or
	// filter (empty, too long, not UTF-8, contains NUL, misplaced wildcard),
	// or a publish names a wildcard channel.
	ErrNameInvalidChannel = "InvalidChannelError"
	// ErrNameForbidden: the ACL refuses the subscribe or publish, or the
	// publish targets a reserved namespace ($SYS, $presence, $sockmq).
	ErrNameForbidden = "ForbiddenError"
	// ErrNameBroker: the broker failed, or the socket reached
	// bridge.max_subscriptions (as SocketCluster's socketChannelLimit).
	ErrNameBroker = "BrokerError"
	// ErrNameUnknownProcedure: an invoke names no procedure registered on
	// the server.
	ErrNameUnknownProcedure = "UnknownProcedureError"
	// ErrNameAuth: the action needs a logged-in socket (anonymous access is
	// off).
	ErrNameAuth = "AuthError"
	// ErrNameLogin: login failed (wrong username or password, or the user
	// may not log in). Unknown users and wrong passwords are not told apart.
	ErrNameLogin = "LoginError"
	// ErrNameLoginPending: the socket is waiting for the delayed answer to
	// a failed login; until it comes, the socket handles nothing else.
	ErrNameLoginPending = "LoginPendingError"
	// ErrNameTokenExpired: the auth token has expired (field expiry).
	ErrNameTokenExpired = "AuthTokenExpiredError"
	// ErrNameTokenInvalid: the auth token is malformed, badly signed, or
	// belongs to a user who may no longer log in.
	ErrNameTokenInvalid = "AuthTokenInvalidError"
	// ErrNameRateLimit: the socket made more #subscribe requests
	// (bridge.subscribe_rate, bridge.subscribe_burst) or procedure calls
	// (bridge.invoke_rate, bridge.invoke_burst) than it may; the request
	// was not carried out. Retrying later succeeds.
	ErrNameRateLimit = "RateLimitError"
	// ErrNameInternal: a procedure failed with an error that is not an
	// *Error; the details are logged, not sent.
	ErrNameInternal = "InternalError"
)

// asWireError converts any error from a procedure to what the client sees.
func asWireError(err error) (*Error, bool) {
	var e *Error
	if errors.As(err, &e) {
		return e, true
	}
	return NewError(ErrNameInternal, "the procedure failed"), false
}

// Close codes the bridge uses. Codes below 4500 (and 1001/1011) make
// socketcluster-client reconnect; 4500-4999 would not.
const (
	// CloseNormal is a normal close (client disconnect()).
	CloseNormal = 1000
	// CloseGoingAway is sent on server shutdown; clients reconnect with
	// back-off.
	CloseGoingAway = 1001
	// CloseInvalidPayload is sent for a text frame that is not valid UTF-8
	// (RFC 6455 §8.1).
	CloseInvalidPayload = 1007
	// CloseMessageTooBig is sent for a frame larger than
	// bridge.max_frame_size.
	CloseMessageTooBig = 1009
	// CloseInternalError is an unexpected server failure.
	CloseInternalError = 1011
	// ClosePongTimeout: nothing arrived within bridge.ping_timeout.
	ClosePongTimeout = 4001
	// CloseHandshakeTimeout: no #handshake within bridge.handshake_timeout.
	CloseHandshakeTimeout = 4005
	// CloseBadHandshake: #handshake (or #authenticate) without a cid.
	CloseBadHandshake = 4008
	// CloseMessageBeforeHandshake: a message or pong arrived before the
	// handshake.
	CloseMessageBeforeHandshake = 4009
	// CloseSlowConsumer: the socket's outbound queue exceeded
	// bridge.max_queue_bytes. Below 4500, so the client reconnects after
	// its back-off.
	CloseSlowConsumer = 4100
	// CloseLoginTimeout: anonymous access is off and the socket did not
	// log in within bridge.login_timeout. 4500 or above: the client does
	// not reconnect.
	CloseLoginTimeout = 4501
	// CloseTooManyFailedLogins: the socket made bridge.max_failed_logins
	// failed logins. 4500 or above: the client does not reconnect.
	CloseTooManyFailedLogins = 4502
)

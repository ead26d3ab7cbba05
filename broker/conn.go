package broker

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync/atomic"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
)

// trackedConn remembers whether CONNECT was read, so that the end of a
// connection that never sent one is reported as a connect timeout.
type trackedConn struct {
	net.Conn
	connected atomic.Bool
}

// errPanic reports a connection that crashed its handler.
var errPanic = errors.New("internal error while handling the connection")

// runGuarded runs a connection's handler and turns a panic (a bug, perhaps
// triggered by a malformed packet) into the end of that one connection
// instead of the end of the process.
func runGuarded(log *slog.Logger, conn net.Conn, fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			log.Error("panic while handling a connection; connection closed", "remote", conn.RemoteAddr().String(), "panic", r, "stack", string(debug.Stack()))
			_ = conn.Close()
			err = errPanic
		}
	}()
	return fn()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, mqtt.ErrConnectionClosed) || errors.Is(err, packets.CodeDisconnect) ||
		errors.Is(err, packets.ErrServerShuttingDown) || errors.Is(err, packets.ErrSessionTakenOver)
}

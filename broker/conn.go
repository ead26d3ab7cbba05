package broker

import (
	"errors"
	"io"
	"net"
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

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isClosedErr(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, mqtt.ErrConnectionClosed) || errors.Is(err, packets.CodeDisconnect) ||
		errors.Is(err, packets.ErrServerShuttingDown) || errors.Is(err, packets.ErrSessionTakenOver)
}

package broker

import (
	"runtime"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/sockmq/sockmq/internal/topic"
)

// sysInterval is how often the broker publishes its $SYS statistics.
const sysInterval = 10 * time.Second

// version is the broker's version as $SYS/broker/version reports it.
var version = func() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return "sockmq " + bi.Main.Version
	}
	return "sockmq"
}()

// publishSys publishes the broker's statistics as retained messages under
// $SYS/broker/ (like mosquitto; never stored, only the broker may publish
// there, and "#" does not match them).
func (s *Server) publishSys(started time.Time) {
	m := s.metrics
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	i := func(v int64) string { return strconv.FormatInt(v, 10) }
	for _, kv := range [][2]string{
		{"version", version},
		{"uptime", i(int64(time.Since(started) / time.Second))},
		{"clients/connected", i(m.clients.Load())},
		{"messages/received", u(m.messagesIn.Load())},
		{"messages/sent", u(m.messagesOut.Load())},
		{"messages/dropped", u(m.dropped.Load() + m.inflightDropped.Load())},
		{"messages/inflight", i(m.queued.Load())},
		{"load/bytes/received", u(m.bytesIn.Load())},
		{"load/bytes/sent", u(m.bytesOut.Load())},
		{"retained messages/count", i(m.retained.Load())},
		{"subscriptions/count", i(m.subscriptions.Load())},
		{"system/goroutines", i(int64(runtime.NumGoroutine()))},
	} {
		s.PublishAsync(Message{Topic: topic.SYS + "/broker/" + kv[0], Payload: []byte(kv[1]), Retain: true}, nil)
	}
}

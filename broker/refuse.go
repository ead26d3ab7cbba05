package broker

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// A refused connection costs bounded work: at most maxRefusing are
// answered at once (more are closed without an answer), each within
// refuseTimeout, reading at most a CONNECT's first bytes or a request's
// headers.
const (
	maxRefusing        = 64
	refuseTimeout      = 2 * time.Second
	maxRefusedConnect  = 64 << 10 // CONNECT bytes drained so that closing does not reset the connection
	maxRefusedRequest  = 8 << 10  // request header bytes read before the 503
	refusedHTTPMessage = "server busy: too many connections, retry later\n"
)

// CONNACK "server busy": MQTT 5 reason 0x89; MQTT 3.1.1 and 3.1 return
// code 3 (server unavailable).
var (
	connackBusy5 = []byte{0x20, 0x03, 0x00, 0x89, 0x00}
	connackBusy3 = []byte{0x20, 0x02, 0x00, 0x03}
	busyResponse = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nRetry-After: 1\r\n" +
		"Connection: close\r\nContent-Length: " + strconv.Itoa(len(refusedHTTPMessage)) + "\r\n\r\n" + refusedHTTPMessage)
)

// refusals tracks the refused connections being answered, so that
// shutdown can close them and wait.
type refusals struct {
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	wg     sync.WaitGroup
}

// refuse counts and logs a refused connection, then answers it in the
// background (or closes it at once when maxRefusing answers are running).
func (g *connGate) refuse(c net.Conn, refusedBy string, answer func(net.Conn)) {
	key, value := "limits.max_connections", g.max
	if refusedBy == limitPerAddress {
		key, value = "limits.max_connections_per_address", g.perAddr
	}
	g.limits.Hit(refusedBy, "connection refused: connection limit reached", "remote", c.RemoteAddr().String(), "key", key, "value", value)
	r := &g.refusals
	r.mu.Lock()
	if r.closed || len(r.conns) >= maxRefusing {
		r.mu.Unlock()
		_ = c.Close()
		return
	}
	if r.conns == nil {
		r.conns = make(map[net.Conn]struct{})
	}
	r.conns[c] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go func() {
		defer r.wg.Done()
		_ = c.SetDeadline(time.Now().Add(refuseTimeout))
		answer(c)
		_ = c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		r.mu.Unlock()
	}()
}

// closeRefusals closes the connections still being answered and waits for
// their goroutines. Safe to call more than once.
func (g *connGate) closeRefusals() {
	r := &g.refusals
	r.mu.Lock()
	r.closed = true
	for c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}

// answerMQTTBusy returns the answer to a refused MQTT connection: read the
// CONNECT far enough to know the protocol version, then CONNACK "server
// busy" in that version. tlsConfig is the listener's (nil for plain TCP);
// answered runs after a CONNACK was sent.
func answerMQTTBusy(tlsConfig *tls.Config, answered func()) func(net.Conn) {
	return func(c net.Conn) {
		if tlsConfig != nil {
			tc := tls.Server(c, tlsConfig)
			defer tc.Close()
			c = tc
		}
		level, ok := readConnectLevel(c)
		if !ok {
			return
		}
		ack := connackBusy5
		if level < 5 {
			ack = connackBusy3
		}
		if _, err := c.Write(ack); err == nil && answered != nil {
			answered()
		}
	}
}

// readConnectLevel reads a CONNECT's fixed header, protocol name and
// protocol level, drains the rest of the packet (up to maxRefusedConnect
// bytes) and returns the level.
func readConnectLevel(r io.Reader) (byte, bool) {
	var b [8]byte
	if _, err := io.ReadFull(r, b[:1]); err != nil || b[0] != 0x10 {
		return 0, false
	}
	remaining, mul := 0, 1
	for i := 0; ; i++ {
		if i == 4 {
			return 0, false
		}
		if _, err := io.ReadFull(r, b[:1]); err != nil {
			return 0, false
		}
		remaining += int(b[0]&0x7f) * mul
		mul *= 128
		if b[0]&0x80 == 0 {
			break
		}
	}
	if _, err := io.ReadFull(r, b[:2]); err != nil {
		return 0, false
	}
	n := int(binary.BigEndian.Uint16(b[:2])) // "MQTT" (4) or "MQIsdp" (6)
	if n != 4 && n != 6 {
		return 0, false
	}
	if _, err := io.ReadFull(r, b[:n+1]); err != nil {
		return 0, false
	}
	level := b[n]
	if rest := remaining - 2 - n - 1; rest > 0 && rest <= maxRefusedConnect {
		_, _ = io.CopyN(io.Discard, r, int64(rest))
	}
	return level, true
}

// answerHTTPBusy returns the answer to a refused HTTP connection: read the
// request's headers, then 503 with Connection: close.
func answerHTTPBusy(tlsConfig *tls.Config) func(net.Conn) {
	return func(c net.Conn) {
		if tlsConfig != nil {
			tc := tls.Server(c, tlsConfig)
			defer tc.Close()
			c = tc
		}
		if _, err := http.ReadRequest(bufio.NewReaderSize(io.LimitReader(c, maxRefusedRequest), 4096)); err != nil {
			return
		}
		_, _ = c.Write(busyResponse)
	}
}

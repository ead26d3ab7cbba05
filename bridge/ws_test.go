package bridge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// maskedFrame is a client frame masked with a non-zero key.
func maskedFrame(opcode byte, fin bool, payload string) []byte {
	key := [4]byte{0x5a, 0x01, 0xc3, 0x7e}
	b0 := opcode
	if fin {
		b0 |= 0x80
	}
	f := []byte{b0}
	if n := len(payload); n <= 125 {
		f = append(f, 0x80|byte(n))
	} else {
		f = append(f, 0x80|126, byte(n>>8), byte(n))
	}
	f = append(f, key[:]...)
	for i := range len(payload) {
		f = append(f, payload[i]^key[i&3])
	}
	return f
}

// rawDial opens a WebSocket with gorilla and returns it; frames may be
// written raw to its underlying connection.
func rawDial(t *testing.T, st *stack) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial("ws://"+st.b.HTTPAddr()+"/socketcluster/", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	return conn
}

// A handshake split into fragments, with a WebSocket ping between them and
// the bytes written one at a time, is handled as one message; the ping is
// answered with a pong carrying its payload.
func TestFragmentsAndPing(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	conn := rawDial(t, st)
	pong := make(chan string, 1)
	conn.SetPongHandler(func(s string) error { pong <- s; return nil })
	hs := `{"event":"#handshake","data":{"authToken":null},"cid":1}`
	var stream []byte
	stream = append(stream, maskedFrame(1, false, hs[:10])...)
	stream = append(stream, maskedFrame(9, true, "are you there")...)
	stream = append(stream, maskedFrame(0, false, hs[10:30])...)
	stream = append(stream, maskedFrame(0, true, hs[30:])...)
	nc := conn.UnderlyingConn()
	for _, b := range stream {
		if _, err := nc.Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
	}
	_, msg, err := conn.ReadMessage() // pongs are handled while reading
	if err != nil {
		t.Fatal(err)
	}
	f := scproto.Decode(msg)
	if f.Kind != scproto.KindPackets || !f.Packets[0].HasRID || f.Packets[0].RID != 1 {
		t.Fatalf("handshake reply %q", msg)
	}
	select {
	case s := <-pong:
		if s != "are you there" {
			t.Fatalf("pong %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no pong")
	}
}

// Frames that break RFC 6455 close the socket with 1002 (protocol error).
func TestProtocolErrorCloses1002(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	for name, frame := range map[string][]byte{
		"unmasked":          {0x81, 0x02, 'h', 'i'},
		"reserved bit":      append([]byte{0xc1}, maskedFrame(1, true, "hi")[1:]...),
		"lone continuation": maskedFrame(0, true, "x"),
	} {
		t.Run(name, func(t *testing.T) {
			conn := rawDial(t, st)
			if _, err := conn.UnderlyingConn().Write(frame); err != nil {
				t.Fatal(err)
			}
			_, _, err := conn.ReadMessage()
			var ce *websocket.CloseError
			if !errors.As(err, &ce) || ce.Code != websocket.CloseProtocolError {
				t.Fatalf("got %v, want close 1002", err)
			}
		})
	}
}

// A socket the bridge closes is closed within the grace period even if the
// client never answers the close frame, and is cleaned up.
func TestCloseWithoutClientAnswer(t *testing.T) {
	cfg := testConfig()
	cfg.HandshakeTimeout = 300 * time.Millisecond
	st := startStack(t, cfg, nil)
	conn := rawDial(t, st)
	conn.SetCloseHandler(func(int, string) error { return nil }) // never answer
	start := time.Now()
	_, _, err := conn.ReadMessage()
	var ce *websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != bridge.CloseHandshakeTimeout {
		t.Fatalf("got %v, want close %d", err, bridge.CloseHandshakeTimeout)
	}
	var buf [16]byte
	_ = conn.UnderlyingConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := conn.UnderlyingConn().Read(buf[:]); err == nil {
		t.Fatal("read data after the close frame")
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("connection ended %v after the socket opened", d)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { return st.h.Sockets() == 0 }, "socket cleaned up")
}

// Over TLS (an HTTPS listener) the socket cannot be driven by the poller:
// it keeps a reader goroutine and works the same.
func TestBridgeOverTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := testutil.SelfSignedCert(t, dir)
	bcfg := testutil.BrokerConfig(t)
	bcfg.Listeners.HTTP.CertFile, bcfg.Listeners.HTTP.KeyFile = certFile, keyFile
	b := testutil.StartBroker(t, bcfg, nil)
	h, err := bridge.New(testConfig(), bridge.Options{Broker: app.BridgeBroker(b), DataDir: dir}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := h.Shutdown(ctx); err != nil {
			t.Errorf("bridge.Shutdown: %v", err)
		}
	})
	for _, p := range h.Paths() {
		b.Handle(p, h)
	}
	pem, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: pool}}
	conn, resp, err := d.Dial("wss://"+b.HTTPAddr()+"/socketcluster/", nil)
	if err != nil {
		t.Fatalf("dial: %v (%v)", err, resp)
	}
	defer conn.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	send := func(s string) {
		if err := conn.WriteMessage(websocket.TextMessage, []byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	send(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)
	send(`{"event":"#subscribe","data":{"channel":"tls/t"},"cid":2}`)
	send(`{"event":"#publish","data":{"channel":"tls/t","data":"over tls"},"cid":3}`)
	var got []byte
	for !strings.Contains(string(got), `"over tls"`) {
		_, msg, err := conn.ReadMessage()
		if err != nil {
			t.Fatalf("after %q: %v", got, err)
		}
		got = append(got, msg...)
	}
	if h.Sockets() != 1 {
		t.Fatalf("%d sockets", h.Sockets())
	}
	_ = conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(1000, "bye"), time.Now().Add(time.Second))
	testutil.WaitFor(t, 5*time.Second, func() bool { return h.Sockets() == 0 }, "socket closed")
	_ = http.StatusOK
}

// Idle sockets have no goroutine on the server: after the handshake and a
// subscription, the poller, the ping wheel and the socket's state are all
// that is left.
func TestIdleSocketsHaveNoGoroutines(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	warm := openIdleSockets(t, st.b.HTTPAddr(), "/socketcluster/", "warm", 5)
	defer closeAll(warm)
	time.Sleep(100 * time.Millisecond)
	g0 := runtime.NumGoroutine()
	const n = 200
	conns := openIdleSockets(t, st.b.HTTPAddr(), "/socketcluster/", "idle", n)
	defer closeAll(conns)
	// Each raw client has one goroutine of its own (answering pings); the
	// server's reader and writer goroutines end once the socket is idle.
	var extra int
	testutil.WaitFor(t, 5*time.Second, func() bool {
		extra = runtime.NumGoroutine() - g0 - n
		return extra < n/10
	}, "server goroutines of idle sockets ended")
	if got := st.h.Sockets(); got != n+len(warm) {
		t.Fatalf("%d sockets open, want %d", got, n+len(warm))
	}
}

package app_test

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
)

// The HTTP listener's read and idle timeouts end with a WebSocket
// upgrade: MQTT over WebSocket (MQTT keepalive) and bridge sockets (pings)
// watch their own liveness and outlive both timeouts.
func TestWebSocketsOutliveHTTPTimeouts(t *testing.T) {
	const timeout = 300 * time.Millisecond
	a := startApp(t, func(f *config.File) {
		f.Listeners.HTTP.ReadTimeout = timeout
		f.Listeners.HTTP.IdleTimeout = timeout
	})
	addr := a.Broker.HTTPAddr()
	mq, _, err := testutil.Connect5(t, testutil.DialWS(t, addr, "/mqtt"), &paho.Connect{ClientID: "ws", CleanStart: true, KeepAlive: 30})
	if err != nil {
		t.Fatal(err)
	}
	mq.Sub(t, "news", 1)
	s, _ := sc(t, a)
	s.Subscribe("news")

	// Two requests that never finish, one after the other, are each cut by
	// the read timeout: by then the WebSockets have been open for longer
	// than both timeouts.
	start := time.Now()
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "GET /healthz HTTP/1.1\r\n")
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("an unfinished request was not cut by listeners.http.read_timeout (%v)", timeout)
		}
		c.Close()
	}
	if d := time.Since(start); d < 2*timeout {
		t.Fatalf("the unfinished requests were cut after %v, before the read timeout", d)
	}

	mq.Pub(t, "news", 1, false, "still here")
	if m := mq.Next(t); string(m.Payload) != "still here" {
		t.Fatalf("MQTT over WebSocket got %q", m.Payload)
	}
	if p := s.NextPub("news"); string(p.Data) != `"still here"` {
		t.Fatalf("bridge socket got %s", p.Data)
	}
}

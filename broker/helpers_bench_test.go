package broker

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"
)

// Helpers for the benchmarks in *_bench_test.go: a broker on 127.0.0.1:0
// and a hand-written MQTT 3.1.1 client, so that client-side costs stay small
// and visible next to the broker's.

// benchBroker starts a broker with persistence on (as in production) in a
// fresh directory, MQTT on 127.0.0.1:0 and no HTTP listener.
func benchBroker(b testing.TB, authz Authorizer, edit func(*Config)) *Server {
	b.Helper()
	cfg := Defaults()
	cfg.Listeners.MQTT.Address = "127.0.0.1:0"
	cfg.Listeners.HTTP.Address = ""
	cfg.Persistence.DataDir = b.TempDir()
	if edit != nil {
		edit(&cfg)
	}
	s, err := New(cfg, authz, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return s
}

func appendMQTTString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}

func appendRemaining(pk []byte, l int) []byte {
	for {
		c := byte(l % 128)
		l /= 128
		if l > 0 {
			c |= 0x80
		}
		pk = append(pk, c)
		if l == 0 {
			return pk
		}
	}
}

// connectPacket is an MQTT 3.1.1 CONNECT, keepalive 60s.
func connectPacket(id, user, pass string, clean bool) []byte {
	body := appendMQTTString(nil, "MQTT")
	flags := byte(0)
	if clean {
		flags |= 0x02
	}
	if user != "" {
		flags |= 0x80
	}
	if pass != "" {
		flags |= 0x40
	}
	body = append(body, 4, flags, 0, 60)
	body = appendMQTTString(body, id)
	if user != "" {
		body = appendMQTTString(body, user)
	}
	if pass != "" {
		body = appendMQTTString(body, pass)
	}
	return append(appendRemaining([]byte{0x10}, len(body)), body...)
}

func subscribePacket(filter string, qos byte) []byte {
	body := []byte{0, 1}
	body = appendMQTTString(body, filter)
	body = append(body, qos)
	return append(appendRemaining([]byte{0x82}, len(body)), body...)
}

// readPacket reads one MQTT packet: its first byte and body.
func readPacket(r *bufio.Reader) (byte, []byte, error) {
	h, err := r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	l, mul := 0, 1
	for i := 0; ; i++ {
		c, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		l += int(c&0x7f) * mul
		mul *= 128
		if c&0x80 == 0 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	body := make([]byte, l)
	_, err = io.ReadFull(r, body)
	return h, body, err
}

// rawClient is a connected MQTT 3.1.1 client.
type rawClient struct {
	c net.Conn
	r *bufio.Reader
}

// dialMQTT connects and returns the CONNACK return code.
func dialMQTT(addr, id, user, pass string, clean bool) (*rawClient, byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	rc := &rawClient{c: c, r: bufio.NewReader(c)}
	if _, err := c.Write(connectPacket(id, user, pass, clean)); err != nil {
		c.Close()
		return nil, 0, err
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, body, err := readPacket(rc.r)
	if err != nil || h != 0x20 || len(body) != 2 {
		c.Close()
		return nil, 0, errors.Join(errors.New("no CONNACK"), err)
	}
	_ = c.SetReadDeadline(time.Time{})
	return rc, body[1], nil
}

func (rc *rawClient) subscribe(filter string, qos byte) error {
	if _, err := rc.c.Write(subscribePacket(filter, qos)); err != nil {
		return err
	}
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = rc.c.SetReadDeadline(time.Time{}) }()
	h, body, err := readPacket(rc.r)
	if err != nil {
		return err
	}
	if h != 0x90 || len(body) != 3 || body[2] > 2 {
		return errors.New("subscription refused")
	}
	return nil
}

// disconnect sends DISCONNECT and waits for the broker to close.
func (rc *rawClient) disconnect() {
	_, _ = rc.c.Write([]byte{0xE0, 0})
	_ = rc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.Copy(io.Discard, rc.r)
	rc.c.Close()
}

package bridge

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// nopBroker is a Broker for sockets that never subscribe or publish.
type nopBroker struct{}

func (nopBroker) Publish(Message) error                           { return nil }
func (nopBroker) Subscribe(string, func(Message)) (func(), error) { return func() {}, nil }
func (nopBroker) Retained(Identity, string) []Message             { return nil }

// stallConn is one end of a net.Pipe whose writes report when they start:
// with nobody reading the other end, a write blocks until the connection is
// closed and then fails.
type stallConn struct {
	net.Conn
	writing chan struct{}
}

func (c *stallConn) Write(b []byte) (int, error) {
	select {
	case c.writing <- struct{}{}:
	default:
	}
	return c.Conn.Write(b)
}

// TestCleanupAfterWriteFailsOnClosedConn pins the interleaving that made
// Shutdown hang: the writer is writing Shutdown's close frame when the
// reader meets the client's end of stream and closes the connection; the
// write then fails. The socket must still be cleaned up (its WaitGroup
// count released), so Shutdown returns.
func TestCleanupAfterWriteFailsOnClosedConn(t *testing.T) {
	cfg := Defaults()
	cfg.WriteTimeout = 10 * time.Second // the write ends by the close, not by its deadline
	h, err := New(cfg, Options{Broker: nopBroker{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, peer := net.Pipe()
	defer peer.Close()
	conn := &stallConn{Conn: local, writing: make(chan struct{}, 1)}

	h.mu.Lock()
	h.wg.Add(1) // as ServeHTTP does
	h.mu.Unlock()
	s := newSocket(h, conn, "test")
	if !h.track(s) {
		t.Fatal("track refused")
	}

	// What Shutdown does first: the writer starts on the close frame and
	// blocks in Write.
	s.close(CloseGoingAway, "server shutting down", false)
	select {
	case <-conn.writing:
	case <-time.After(5 * time.Second):
		t.Fatal("the writer never wrote the close frame")
	}
	// The reader meets the end of the stream meanwhile: the connection is
	// closed under the writer, whose write fails.
	s.readFailed(io.EOF)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v (the socket was never cleaned up)", err)
	}
	if n := h.Sockets(); n != 0 {
		t.Errorf("%d sockets still tracked after Shutdown", n)
	}
}

// TestShutdownBeforeStart closes a socket Shutdown found tracked before
// its start ran: start must not start a reader on the closed socket or
// leave a poller watch behind, and the socket is cleaned up once.
func TestShutdownBeforeStart(t *testing.T) {
	h, err := New(Defaults(), Options{Broker: nopBroker{}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}

	h.mu.Lock()
	h.wg.Add(1)
	h.mu.Unlock()
	s := newSocket(h, conn, "test")
	if !h.track(s) {
		t.Fatal("track refused")
	}
	s.readFailed(io.EOF) // closed before start: cleanup runs here
	s.start(nil)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	s.qmu.Lock()
	reading := s.reading
	s.qmu.Unlock()
	if reading {
		t.Error("start began reading a closed socket")
	}
	if h.poll != nil {
		if n := h.poll.Watched(); n != 0 {
			t.Errorf("poller still watches %d sockets", n)
		}
	}
}

//go:build linux

package poller

import (
	"net"
	"testing"
	"time"
)

// tcpPair returns a connected client and the server side wrapped for the
// poller.
func tcpPair(t *testing.T) (net.Conn, *ConnIO) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cio, err := WrapConn(server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cio.Close() })
	return client, cio
}

// drain reads what cio holds without blocking.
func drain(cio *ConnIO, buf []byte) {
	for {
		if _, err := cio.Read(buf); err != nil {
			return
		}
	}
}

// A socket that becomes readable while the same poller is still running
// another socket's handler is reported once that handler returns. The
// handler stays long enough for Go's network poller to see the epoll
// descriptor readable meanwhile: that readiness must not be thrown away
// when the poller goes back to waiting (a lost wake-up there leaves the
// socket's data unread until some other socket of the poller has an
// event, which hung clients waiting for a PUBACK).
func TestEventDuringHandlerIsNotLost(t *testing.T) {
	g, err := New(1, 256) // one poller: both sockets share it
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	clientA, a := tcpPair(t)
	clientB, b := tcpPair(t)

	const rounds = 3
	bRead := make(chan struct{}, rounds)
	var wa, wb *Watch
	wa, err = g.Add(a.Fd(), func(_ int, buf []byte) {
		drain(a, buf)
		// B gets data now, after the batch holding this event was taken.
		if _, err := clientB.Write([]byte("b")); err != nil {
			t.Error(err)
		}
		// Keep the poller busy, as a handler that has much to do would;
		// the runtime polls the network (and so the epoll descriptor)
		// at least every 10 ms meanwhile.
		time.Sleep(50 * time.Millisecond)
		_ = wa.Arm(Readable)
	})
	if err != nil {
		t.Fatal(err)
	}
	wb, err = g.Add(b.Fd(), func(_ int, buf []byte) {
		drain(b, buf)
		bRead <- struct{}{}
		_ = wb.Arm(Readable)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	defer wb.Close()
	if err := wb.Arm(Readable); err != nil {
		t.Fatal(err)
	}
	if err := wa.Arm(Readable); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < rounds; i++ {
		if _, err := clientA.Write([]byte("a")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-bRead:
		case <-time.After(3 * time.Second):
			t.Fatalf("round %d: socket B became readable during A's handler and was never reported", i)
		}
	}
}

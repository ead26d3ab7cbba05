//go:build linux

package poller

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// A socket accepted by a Listener is read when it is readable, written
// with Writev, and reports EOF when the peer closes; nothing blocks a
// goroutine per socket.
func TestListenerWatchReadWrite(t *testing.T) {
	g, err := New(2, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	ln, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	var mu sync.Mutex
	var got []byte
	eof := make(chan struct{})
	accepted := make(chan *Socket, 1)
	var lw *Watch
	lw, err = g.Add(ln.Fd(), func(ev int, _ []byte) {
		s, err := ln.Accept()
		if err == nil {
			accepted <- s
		}
		_ = lw.Arm(Readable)
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := lw.Arm(Readable); err != nil {
		t.Fatal(err)
	}

	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	var s *Socket
	select {
	case s = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("no accept")
	}
	defer s.Close()
	var w *Watch
	w, err = g.Add(s.Fd(), func(ev int, buf []byte) {
		for {
			n, err := s.Read(buf)
			if n > 0 {
				mu.Lock()
				got = append(got, buf[:n]...)
				mu.Unlock()
			}
			if errors.Is(err, io.EOF) {
				close(eof)
				return
			}
			if errors.Is(err, ErrWouldBlock) {
				_ = w.Arm(Readable)
				return
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Arm(Readable)

	if _, err := s.Writev([][]byte{[]byte("hel"), []byte("lo")}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("client read %q %v", buf, err)
	}
	_, _ = client.Write([]byte("ping"))
	_, _ = client.Write([]byte("pong"))
	client.Close()
	select {
	case <-eof:
	case <-time.After(5 * time.Second):
		t.Fatal("no EOF")
	}
	mu.Lock()
	defer mu.Unlock()
	if string(got) != "pingpong" {
		t.Fatalf("server read %q", got)
	}
	if g.Watched() != 2 {
		t.Fatalf("watched %d", g.Watched())
	}
	w.Close()
	lw.Close()
	if g.Watched() != 0 {
		t.Fatalf("watched %d after close", g.Watched())
	}
	if _, err := s.Read(buf); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, ErrWouldBlock) {
		t.Logf("read after EOF: %v", err)
	}
	s.Close()
	if _, err := s.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

// A Go net.Conn (as net/http hands over a hijacked WebSocket) is read
// without a goroutine blocked on it, and reports net.ErrClosed once closed.
func TestWrapConn(t *testing.T) {
	g, err := New(1, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
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
	server, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	cio, err := WrapConn(server)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1)
	var w *Watch
	w, err = g.Add(cio.Fd(), func(ev int, buf []byte) {
		n, err := cio.Read(buf)
		if err == nil {
			got <- string(buf[:n])
			return
		}
		_ = w.Arm(Readable)
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = w.Arm(Readable)
	_, _ = client.Write([]byte("hi"))
	select {
	case s := <-got:
		if s != "hi" {
			t.Fatalf("got %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing read")
	}
	if _, err := cio.Writev([][]byte{[]byte("yo")}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(client, buf); err != nil || string(buf) != "yo" {
		t.Fatalf("client got %q %v", buf, err)
	}
	w.Close()
	_ = cio.Close()
	if _, err := cio.Read(buf); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
}

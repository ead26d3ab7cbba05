//go:build linux

package poller

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// rawWritev sends every byte of its buffers in order, skipping empty ones,
// both below and above the number it passes without allocating; rawRead
// reports EAGAIN on an empty non-blocking socket.
func TestRawWritevAndRead(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	buf := make([]byte, 64<<10)
	if _, err := rawRead(fds[1], buf); !errors.Is(err, unix.EAGAIN) {
		t.Fatalf("read of an empty socket: %v, want EAGAIN", err)
	}
	for _, count := range []int{0, 1, 5, rawIovecs, rawIovecs + 9} {
		var bufs [][]byte
		var want []byte
		for i := 0; i < count; i++ {
			b := bytes.Repeat([]byte{byte('a' + i%26)}, i%4) // every fourth is empty
			bufs = append(bufs, b)
			want = append(want, b...)
		}
		n, err := rawWritev(fds[0], bufs)
		if err != nil || n != len(want) {
			t.Fatalf("%d buffers: writev = %d, %v; want %d bytes", count, n, err, len(want))
		}
		if len(want) == 0 {
			continue
		}
		got, err := rawRead(fds[1], buf)
		if err != nil || !bytes.Equal(buf[:got], want) {
			t.Fatalf("%d buffers: read %q, %v; want %q", count, buf[:got], err, want)
		}
	}
	if err := rawEpollCtl(-1, unix.EPOLL_CTL_MOD, fds[0], &unix.EpollEvent{}); !errors.Is(err, unix.EBADF) {
		t.Fatalf("epoll_ctl on a bad descriptor: %v, want EBADF", err)
	}
}

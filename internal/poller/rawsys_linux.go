//go:build linux

package poller

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The calls below never wait (non-blocking sockets, epoll_wait with a zero
// timeout, epoll_ctl), so they are made as raw system calls, without the
// runtime's entersyscall/exitsyscall. Besides that bookkeeping this saves
// a wake-up of the runtime's sysmon thread: once every P has been idle
// sysmon sleeps, and the first ordinary system call after the process
// wakes rouses it again (a futex wake, then sysmon polls every 20 µs for a
// while). A broker paced at a few thousand messages per second goes idle
// between messages, so that happened for nearly every message.

// rawIovecs is how many buffers rawWritev passes without allocating; more
// go through unix.Writev.
const rawIovecs = 32

func errnoErr(e syscall.Errno) error {
	switch e {
	case 0:
		return nil
	case unix.EAGAIN:
		return unix.EAGAIN
	case unix.EINTR:
		return unix.EINTR
	}
	return e
}

// rawRead is read(2) on a non-blocking descriptor.
func rawRead(fd int, p []byte) (int, error) {
	var ptr unsafe.Pointer
	if len(p) > 0 {
		ptr = unsafe.Pointer(&p[0])
	}
	n, _, e := syscall.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(ptr), uintptr(len(p)))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(n), nil
}

// rawWrite is write(2) on a non-blocking descriptor.
func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(n), nil
}

// rawWritev is writev(2) on a non-blocking descriptor.
func rawWritev(fd int, bufs [][]byte) (int, error) {
	if len(bufs) > rawIovecs {
		return unix.Writev(fd, bufs)
	}
	var iov [rawIovecs]unix.Iovec
	k := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		iov[k].Base = &b[0]
		iov[k].SetLen(len(b))
		k++
	}
	if k == 0 {
		return 0, nil
	}
	n, _, e := syscall.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(k))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(n), nil
}

// rawEpollPoll is epoll_wait(2) with a zero timeout (it never waits).
func rawEpollPoll(epfd int, evs []unix.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&evs[0])), uintptr(len(evs)), 0, 0, 0)
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(n), nil
}

// rawEpollCtl is epoll_ctl(2).
func rawEpollCtl(epfd, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(epfd), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return errnoErr(e)
	}
	return nil
}

//go:build linux

package poller

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Events a handler may be told about.
const (
	// Readable: data (or the peer's close) can be read.
	Readable = 1 << iota
	// Writable: the socket's send buffer has room again.
	Writable
)

// Handler is called on a poller goroutine with the events that occurred
// and a buffer the handler may read into (it belongs to the poller
// goroutine and is reused for the next socket: copy what must be kept).
type Handler func(events int, buf []byte)

// ErrClosed is returned for a poller or watch that was closed.
var ErrClosed = errors.New("poller: closed")

// Group is a set of pollers; sockets are spread over them.
type Group struct {
	pollers []*poller
	next    atomic.Uint32
	nextTok atomic.Uint64
	wg      sync.WaitGroup
	once    sync.Once
}

type poller struct {
	g    *Group
	epfd int
	wake int // eventfd that ends the loop
	buf  []byte
	// ep is epfd wrapped for Go's network poller: the loop parks its
	// goroutine there (no OS thread blocked in epoll_wait) and asks for
	// events with a zero timeout once the epoll descriptor is readable.
	// nil when the runtime could not register it (then epoll_wait blocks).
	ep   *os.File
	eprc syscall.RawConn
	// The loop's events buffer and its RawConn read function (collect,
	// bound once).
	evs       []unix.EpollEvent
	collectFn func(uintptr) bool

	mu      sync.Mutex
	watches map[uint64]*Watch
	closed  bool
}

// Watch is one registered socket.
type Watch struct {
	p   *poller
	fd  int
	tok uint64
	fn  Handler
	mu  sync.Mutex
	off bool // removed
}

// wakeToken is the token of a poller's eventfd.
const wakeToken = 0

// New starts n pollers (n <= 0: one per CPU), each with a read buffer of
// bufSize bytes.
func New(n, bufSize int) (*Group, error) {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	g := &Group{}
	g.nextTok.Store(wakeToken)
	for i := 0; i < n; i++ {
		p, err := newPoller(g, bufSize)
		if err != nil {
			g.Close()
			return nil, err
		}
		g.pollers = append(g.pollers, p)
	}
	for _, p := range g.pollers {
		g.wg.Add(1)
		go p.run()
	}
	return g, nil
}

func newPoller(g *Group, bufSize int) (*poller, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN}
	setToken(&ev, wakeToken)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	p := &poller{g: g, epfd: epfd, wake: wake, buf: make([]byte, bufSize), watches: make(map[uint64]*Watch)}
	p.intoNetpoller()
	return p, nil
}

// intoNetpoller hands the epoll descriptor to Go's network poller (an
// epoll descriptor is itself pollable): waiting for events then parks the
// poller goroutine like any network read instead of holding an OS thread
// in epoll_wait, which saves a thread hand-off per wake-up. On failure the
// loop keeps blocking in epoll_wait.
func (p *poller) intoNetpoller() {
	dup, err := unix.Dup(p.epfd)
	if err != nil {
		return
	}
	unix.CloseOnExec(dup)
	if err := unix.SetNonblock(dup, true); err != nil {
		unix.Close(dup)
		return
	}
	f := os.NewFile(uintptr(dup), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return
	}
	// Probe: a descriptor the runtime could not register reports an
	// error from a read that has to wait; a registered one parks. The
	// deadline ends the probe at once either way.
	_ = f.SetReadDeadline(aLongTimeAgo)
	perr := rc.Read(func(uintptr) bool { return false })
	_ = f.SetReadDeadline(noDeadline)
	if !errors.Is(perr, os.ErrDeadlineExceeded) {
		f.Close()
		return
	}
	p.ep, p.eprc = f, rc
	p.collectFn = p.collect
}

// epoll_event's data is a union; golang.org/x/sys lays it out as Fd and
// Pad (two int32): together they carry the 64-bit token.
func setToken(ev *unix.EpollEvent, tok uint64) {
	ev.Fd = int32(uint32(tok))
	ev.Pad = int32(uint32(tok >> 32))
}

func token(ev *unix.EpollEvent) uint64 {
	return uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
}

// Add registers fd (a non-blocking socket) with fn; it is not watched until
// Arm is called. The caller keeps fd open until after Close of the Watch.
func (g *Group) Add(fd int, fn Handler) (*Watch, error) {
	p := g.pollers[g.next.Add(1)%uint32(len(g.pollers))]
	w := &Watch{p: p, fd: fd, tok: g.nextTok.Add(1), fn: fn}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.watches[w.tok] = w
	p.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLONESHOT}
	setToken(&ev, w.tok)
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		p.mu.Lock()
		delete(p.watches, w.tok)
		p.mu.Unlock()
		return nil, fmt.Errorf("epoll_ctl add: %w", err)
	}
	return w, nil
}

// Arm watches the socket for one event among those asked (Readable,
// Writable or both); the handler is then called once.
func (w *Watch) Arm(events int) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.off {
		return ErrClosed
	}
	var e uint32 = unix.EPOLLONESHOT | unix.EPOLLRDHUP
	if events&Readable != 0 {
		e |= unix.EPOLLIN
	}
	if events&Writable != 0 {
		e |= unix.EPOLLOUT
	}
	ev := unix.EpollEvent{Events: e}
	setToken(&ev, w.tok)
	if err := rawEpollCtl(w.p.epfd, unix.EPOLL_CTL_MOD, w.fd, &ev); err != nil {
		return fmt.Errorf("epoll_ctl mod: %w", err)
	}
	return nil
}

// Close stops watching the socket (call it before closing the socket).
// Safe to call more than once.
func (w *Watch) Close() {
	w.mu.Lock()
	if w.off {
		w.mu.Unlock()
		return
	}
	w.off = true
	_ = unix.EpollCtl(w.p.epfd, unix.EPOLL_CTL_DEL, w.fd, nil)
	w.mu.Unlock()
	w.p.mu.Lock()
	delete(w.p.watches, w.tok)
	w.p.mu.Unlock()
}

// Watched returns how many sockets the group watches.
func (g *Group) Watched() int {
	n := 0
	for _, p := range g.pollers {
		p.mu.Lock()
		n += len(p.watches)
		p.mu.Unlock()
	}
	return n
}

func (p *poller) run() {
	defer p.g.wg.Done()
	events := make([]unix.EpollEvent, 256)
	if p.eprc != nil {
		// One RawConn read for the poller's whole life: collect handles
		// the events itself and only returns to stop.
		p.evs = events
		_ = p.eprc.Read(p.collectFn)
		return
	}
	for {
		n, err := unix.EpollWait(p.epfd, events, -1)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || p.dispatch(events[:n]) {
			return
		}
	}
}

// collect is the loop when the epoll descriptor is in Go's network
// poller, run as its RawConn read function (bound once: no allocation per
// wait). It takes ready events without waiting and handles them; it
// returns false to park until the epoll descriptor is readable, and true
// only when the poller stops. A batch that did not fill the events buffer
// emptied the ready list, so it parks at once instead of asking again:
// anything that got ready since then marked the descriptor readable (the
// read is not re-prepared between calls, so that mark is kept).
func (p *poller) collect(uintptr) bool {
	for {
		n, err := rawEpollPoll(p.epfd, p.evs)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			return true
		case n == 0:
			return false
		}
		if p.dispatch(p.evs[:n]) {
			return true
		}
		if n < len(p.evs) {
			return false
		}
	}
}

// dispatch calls the handlers of events; it reports whether the poller
// must stop (its eventfd fired).
func (p *poller) dispatch(events []unix.EpollEvent) bool {
	for i := range events {
		ev := &events[i]
		tok := token(ev)
		if tok == wakeToken {
			return true
		}
		p.mu.Lock()
		w := p.watches[tok]
		p.mu.Unlock()
		if w == nil {
			continue // closed meanwhile
		}
		// Taking the watch's lock orders this event after the Arm that
		// asked for it (the kernel's ordering is invisible to Go's
		// memory model) and skips watches closed meanwhile.
		w.mu.Lock()
		off := w.off
		w.mu.Unlock()
		if off {
			continue
		}
		var what int
		if ev.Events&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			what |= Readable
		}
		if ev.Events&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			what |= Writable
		}
		w.fn(what, p.buf)
	}
	return false
}

// Close stops every poller and waits for them. Watches are not closed
// (their owners close their sockets). Safe to call more than once.
func (g *Group) Close() {
	g.once.Do(func() {
		for _, p := range g.pollers {
			p.mu.Lock()
			p.closed = true
			p.mu.Unlock()
			var one = [8]byte{1}
			_, _ = unix.Write(p.wake, one[:])
		}
		g.wg.Wait()
		for _, p := range g.pollers {
			if p.ep != nil {
				p.ep.Close()
			}
			unix.Close(p.epfd)
			unix.Close(p.wake)
		}
	})
}

var (
	aLongTimeAgo = time.Unix(1, 0)
	noDeadline   time.Time
)

package broker

import (
	"errors"
	"net"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/poller"
)

// connectReadSize is the read buffer of a connection's first read, which
// runs on a short-lived goroutine (CONNECT may wait: a takeover waits for
// the previous connection to end).
const connectReadSize = 2048

// maxReadsPerEvent bounds the reads of one readiness event, so that one
// busy client cannot keep a poller from the others.
const maxReadsPerEvent = 4

// pollIO is the part of a connection driven by the poller instead of a
// reader goroutine (plain TCP on Linux). An idle connection then holds no
// goroutine and no read buffer: reads go into the poller's buffer and only
// an incomplete packet's bytes are kept (conn.partial).
//
// Exactly one party is the reader at any time: the poller goroutine
// running onEvent, the goroutine handling CONNECT, or nobody while the
// one-shot watch is armed or reading is paused. The reader ends the
// connection (finish) or re-arms the watch; resume re-arms it after a
// pause.
type pollIO struct {
	io    *poller.ConnIO
	watch *poller.Watch
	flush *flusher // the listener's: coalesces writes per read batch
	// paused (guarded by conn.wmu): not re-armed while maxPendingAcks
	// acknowledgements wait for the store.
	paused bool
	// final: the watch is closed and cleanup runs; closeNet now closes
	// the descriptor instead of shutting the socket down.
	final atomic.Bool
	// ncClosed: the net.Conn was closed (once).
	ncClosed atomic.Bool
	// ended: cleanupPolled has started (once).
	ended atomic.Bool
}

// servePolled starts c on the poller; it returns false if the connection
// cannot be polled (the caller then serves it with a goroutine).
func (s *Server) servePolled(g *poller.Group, f *flusher, nc net.Conn, listener string) bool {
	raw := nc
	if gc, ok := nc.(*gatedConn); ok {
		raw = gc.Conn
	}
	pio, err := poller.WrapConn(raw)
	if err != nil {
		return false
	}
	c := newConn(s, nc, listener)
	c.pl = &pollIO{io: pio, flush: f}
	w, err := g.Add(pio.Fd(), c.onEvent)
	if err != nil {
		return false
	}
	c.pl.watch = w
	c.number = s.nextConn.Add(1)
	if !s.conns.add(c, &s.connWG) {
		w.Close()
		_ = nc.Close()
		return true
	}
	s.clock.watchConnect(c)
	if err := w.Arm(poller.Readable); err != nil {
		c.end(&endCause{err: err, reason: ReasonWill})
		go c.cleanupPolled()
	}
	return true
}

// onEvent runs on a poller goroutine when the socket is readable. Until
// CONNECT is handled the work moves to a goroutine (authentication and a
// session takeover may wait); after that packets are handled here.
func (c *conn) onEvent(_ int, buf []byte) {
	if c.state.Load() == stNew {
		go c.readPolled(make([]byte, connectReadSize), false)
		return
	}
	c.readPolled(buf, true)
}

// readPolled reads what the socket holds (non-blocking), handles the
// complete packets, writes the batch's output and re-arms the watch (or
// pauses, or ends the connection). On a poller goroutine (batch) the
// writes it causes are coalesced until the batch ends; the CONNECT
// goroutine may wait (a takeover waits for the previous connection, whose
// DISCONNECT must be written meanwhile), so it is never a batch.
func (c *conn) readPolled(buf []byte, batch bool) {
	f := c.pl.flush
	if batch {
		f.begin()
	}
	endBatch := func() {
		if batch {
			batch = false
			f.end()
		}
	}
	defer endBatch()
	defer func() {
		if r := recover(); r != nil {
			c.s.log.Error("panic while handling a connection; connection closed", "remote", c.remote, "client", c.clientID,
				"panic", r, "stack", string(debug.Stack()))
			c.end(&endCause{err: errPanic, reason: ReasonWill})
			go c.cleanupPolled()
		}
	}()
	for i := 0; i < maxReadsPerEvent; i++ {
		n, err := c.pl.io.Read(buf)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			c.s.metrics.bytesIn.Add(uint64(n))
			if herr := c.feed(buf[:n]); herr != nil {
				c.fail(herr)
				go c.cleanupPolled()
				return
			}
		}
		if err != nil {
			if errors.Is(err, poller.ErrWouldBlock) {
				break
			}
			c.flush()
			c.fail(err)
			go c.cleanupPolled()
			return
		}
		if n < len(buf) || c.state.Load() == stClosing {
			break // drained (or ending); a later arrival fires the re-armed watch
		}
	}
	c.flush()
	endBatch() // writes this batch's output, before reading again
	if c.state.Load() == stClosing {
		go c.cleanupPolled()
		return
	}
	c.rearm()
}

// rearm watches the socket again, unless too many acknowledgements wait
// for the store: then reading pauses until resume (backpressure); or
// unless c published and the publisher throttle is engaged.
func (c *conn) rearm() {
	c.wmu.Lock()
	if c.pendingAcks >= maxPendingAcks && !c.closed {
		c.pl.paused = true
		c.wmu.Unlock()
		return
	}
	c.wmu.Unlock()
	if c.published {
		c.published = false
		if c.s.throttle.pause(c) {
			return // armed again when the throttle releases or c closes
		}
	}
	if err := c.pl.watch.Arm(poller.Readable); err != nil {
		c.fail(err)
		go c.cleanupPolled()
	}
}

// resumeLocked takes a paused connection's reader role back when its
// acknowledgements fall below the bound or it closes; the caller holds
// c.wmu and calls arm (without the lock) when it returns true.
func (c *conn) resumeLocked() bool {
	if c.pl == nil || !c.pl.paused || (c.pendingAcks >= maxPendingAcks && !c.closed) {
		return false
	}
	c.pl.paused = false
	return true
}

// arm re-arms a resumed connection's watch.
func (c *conn) arm() {
	if err := c.pl.watch.Arm(poller.Readable); err != nil {
		c.fail(err)
		go c.cleanupPolled()
	}
}

// cleanupPolled ends a polled connection: no more events, then the same
// cleanup as a goroutine-served connection. It runs once, started by the
// reader.
func (c *conn) cleanupPolled() {
	if c.pl.ended.Swap(true) {
		return
	}
	defer c.s.connWG.Done()
	defer c.s.conns.remove(c)
	c.pl.watch.Close()
	c.pl.final.Store(true)
	c.cleanup()
}

// closePolled is closeNet for a polled connection: while the watch is
// live the socket is shut down (the watch then reports it and the reader
// ends the connection: closing the descriptor would silence the watch);
// once cleanup runs the descriptor is closed.
func (c *conn) closePolled(already, resume bool) {
	if c.pl.final.Load() {
		if !c.pl.ncClosed.Swap(true) {
			_ = c.nc.Close()
		}
		return
	}
	if !already {
		if tc, ok := c.raw.(*net.TCPConn); ok {
			_ = tc.CloseRead()
			_ = tc.CloseWrite()
		} else {
			_ = c.nc.Close()
		}
	}
	if resume {
		c.arm()
	}
}

// pollers returns how many connections the poller watches (for tests).
func (l *tcpListener) pollers() int {
	if l == nil || l.poll == nil {
		return 0
	}
	return l.poll.Watched()
}

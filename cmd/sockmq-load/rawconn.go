package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// The raw client: a small MQTT 3.1.1 client written for the load tool, so
// that the tool spends little CPU per message and a run measures the
// broker, not the client. Per connection, one reader goroutine reads into
// a reused buffer and handles every packet that arrived with one read;
// the acknowledgements those packets need (PUBACK, PUBREC, PUBREL,
// PUBCOMP) are collected and written with one write per read. Publishers
// write from their own goroutine; a keepalive goroutine sends PINGREQ.
// Received payloads are handed over as slices of the read buffer, valid
// during the callback only.

const (
	rawReadBuffer   = 64 << 10 // initial read buffer per connection
	rawMinMaxPacket = 1 << 20  // inbound packet limit, at least
	rawDialTimeout  = 10 * time.Second
	rawWriteTimeout = 10 * time.Second
)

// rawCallbacks are what a connection's reader hands over. Both are called
// on the reader goroutine.
type rawCallbacks struct {
	// message is an incoming application message (not called again for a
	// QoS 2 message the broker sends again before PUBREL).
	message func(topic, payload []byte)
	// ack is a PUBACK, PUBREC or PUBCOMP for one of our publishes,
	// received at now.
	ack func(typ byte, id uint16, now time.Time)
	// closed is called once when the connection ends, with why.
	closed func(err error)
}

// rawConn is one MQTT 3.1.1 connection of the raw client.
type rawConn struct {
	conn net.Conn
	cb   rawCallbacks
	pr   *packetReader

	wmu     sync.Mutex
	wdlSet  time.Time // when the write deadline was last moved
	acks    []byte    // written once per read (reader only)
	qos2In  []uint64  // a bit per packet id: QoS 2 received, PUBREL not yet
	subacks chan []byte

	lastRecv atomic.Int64 // unix ns of the last read
	closing  atomic.Bool  // Close was called: the end is not a drop
	done     chan struct{}
	stop     chan struct{}
	stopOnce sync.Once
	errMu    sync.Mutex
	err      error
}

// rawDialOpts say how to connect.
type rawDialOpts struct {
	addr, id   string
	clean      bool
	user, pass string
	keepalive  time.Duration
	maxPacket  int
}

// dialRaw connects, waits for the CONNACK and starts the reader and the
// keepalive. sessionPresent is the CONNACK's flag.
func dialRaw(o rawDialOpts, cb rawCallbacks) (c *rawConn, sessionPresent bool, err error) {
	conn, err := net.DialTimeout("tcp", o.addr, rawDialTimeout)
	if err != nil {
		return nil, false, err
	}
	c = &rawConn{conn: conn, cb: cb, pr: newPacketReader(rawReadBuffer, max(o.maxPacket, rawMinMaxPacket)),
		subacks: make(chan []byte, 1), done: make(chan struct{}), stop: make(chan struct{})}
	ka := uint16(min(o.keepalive/time.Second, 65535))
	_ = conn.SetDeadline(time.Now().Add(rawDialTimeout))
	if _, err := conn.Write(appendConnect(nil, o.id, o.clean, o.user, o.pass, ka)); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("send CONNECT: %w", err)
	}
	first, body, err := c.readOne()
	if err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("waiting for CONNACK: %w", err)
	}
	if first != pktConnack<<4 || len(body) != 2 {
		conn.Close()
		return nil, false, protoErr("expected CONNACK, got %s (first byte %#x, %d bytes)", pktNames[first>>4], first, len(body))
	}
	if body[1] != 0 {
		conn.Close()
		return nil, false, connackError(body[1])
	}
	sessionPresent = body[0]&1 == 1 // body is the reader's buffer from now on
	_ = conn.SetDeadline(time.Time{})
	c.lastRecv.Store(time.Now().UnixNano())
	go c.readLoop()
	if ka > 0 {
		go c.keepalive(time.Duration(ka) * time.Second)
	}
	return c, sessionPresent, nil
}

// readOne reads until one packet is complete (before the reader runs).
func (c *rawConn) readOne() (byte, []byte, error) {
	for {
		first, body, ok, err := c.pr.next()
		if err != nil || ok {
			return first, body, err
		}
		if err := c.pr.fill(c.conn); err != nil {
			return 0, nil, err
		}
	}
}

func (c *rawConn) readLoop() {
	defer close(c.done)
	// Packets already read with the CONNACK come first.
	if err := c.handleBuffered(time.Now()); err != nil {
		c.fail(err)
		return
	}
	if sc, ok := c.conn.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			c.fail(c.readRaw(rc))
			return
		}
	}
	for {
		if err := c.pr.fill(c.conn); err != nil {
			c.fail(err)
			return
		}
		now := time.Now()
		c.lastRecv.Store(now.UnixNano())
		if err := c.handleBuffered(now); err != nil {
			c.fail(err)
			return
		}
	}
}

// readRaw reads and handles packets inside one RawConn.Read for the whole
// life of the connection. A net.Conn's Read tries the socket before it
// waits for the poller, and when messages come one at a time that first
// try finds nothing half of the time: a wasted read system call per
// message. Here, after a read that drained the socket (it returned less
// than it could), the reader waits for the poller straight away; the
// poller remembers data that arrived while packets were being handled,
// because the wait is inside the same RawConn.Read (only its start
// forgets earlier readiness, and the first read happens right after it).
func (c *rawConn) readRaw(rc syscall.RawConn) error {
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			space := c.pr.space()
			n, err := syscall.Read(int(fd), space)
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
				return false
			case err != nil:
				rerr = os.NewSyscallError("read", err)
				return true
			case n == 0:
				rerr = io.EOF
				return true
			}
			c.pr.w += n
			now := time.Now()
			c.lastRecv.Store(now.UnixNano())
			if err := c.handleBuffered(now); err != nil {
				rerr = err
				return true
			}
			if n < len(space) {
				return false // drained: wait for the poller
			}
		}
	})
	if rerr != nil {
		return rerr
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// handleBuffered handles every complete packet in the buffer and writes
// the acknowledgements they need at once.
func (c *rawConn) handleBuffered(now time.Time) error {
	for {
		first, body, ok, err := c.pr.next()
		if err != nil {
			return err
		}
		if !ok {
			break
		}
		if err := c.handle(first, body, now); err != nil {
			return err
		}
	}
	if len(c.acks) == 0 {
		return nil
	}
	err := c.write(c.acks)
	c.acks = c.acks[:0]
	return err
}

func (c *rawConn) handle(first byte, body []byte, now time.Time) error {
	typ := first >> 4
	switch typ {
	case pktPublish:
		qos, id, topic, payload, err := publishFields(first, body)
		if err != nil {
			return err
		}
		switch qos {
		case 0:
			c.deliver(topic, payload)
		case 1:
			c.deliver(topic, payload)
			c.acks = appendAck(c.acks, pktPuback, id)
		case 2:
			if c.qos2In == nil {
				c.qos2In = make([]uint64, 65536/64)
			}
			w, bit := id/64, uint64(1)<<(id%64)
			if c.qos2In[w]&bit == 0 { // a resend before PUBREL is not a new message
				c.qos2In[w] |= bit
				c.deliver(topic, payload)
			}
			c.acks = appendAck(c.acks, pktPubrec, id)
		}
		return nil
	case pktPuback, pktPubrec, pktPubcomp, pktPubrel:
		wantFirst := typ << 4
		if typ == pktPubrel {
			wantFirst |= 0x02
		}
		if first != wantFirst || len(body) != 2 {
			return protoErr("%s with first byte %#x and %d bytes", pktNames[typ], first, len(body))
		}
		id := uint16(body[0])<<8 | uint16(body[1])
		switch typ {
		case pktPubrel:
			if c.qos2In != nil {
				c.qos2In[id/64] &^= uint64(1) << (id % 64)
			}
			c.acks = appendAck(c.acks, pktPubcomp, id)
			return nil
		case pktPubrec:
			c.acks = appendAck(c.acks, pktPubrel, id)
		}
		if c.cb.ack != nil {
			c.cb.ack(typ, id, now)
		}
		return nil
	case pktSuback:
		if len(body) < 3 {
			return protoErr("SUBACK of %d bytes", len(body))
		}
		select {
		case c.subacks <- append([]byte(nil), body...):
		default:
			return protoErr("SUBACK that was not asked for")
		}
		return nil
	case pktUnsuback, pktPingresp:
		return nil
	default:
		return protoErr("unexpected %s from the broker (first byte %#x)", pktNames[typ], first)
	}
}

func (c *rawConn) deliver(topic, payload []byte) {
	if c.cb.message != nil {
		c.cb.message(topic, payload)
	}
}

// write writes b whole, moving the write deadline forward at most once a
// second (setting it costs more than the write of a small packet).
func (c *rawConn) write(b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if now := time.Now(); now.Sub(c.wdlSet) > time.Second {
		_ = c.conn.SetWriteDeadline(now.Add(rawWriteTimeout))
		c.wdlSet = now
	}
	_, err := c.conn.Write(b)
	return err
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK.
func (c *rawConn) subscribe(filter string, qos byte, timeout time.Duration) error {
	const id = 1
	if err := c.write(appendSubscribe(nil, id, filter, qos)); err != nil {
		return fmt.Errorf("send SUBSCRIBE: %w", err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case body := <-c.subacks:
		if got := uint16(body[0])<<8 | uint16(body[1]); got != id || len(body) != 3 {
			return protoErr("SUBACK for packet id %d with %d return codes; sent SUBSCRIBE %d with one filter", got, len(body)-2, id)
		}
		if body[2] == 0x80 {
			return fmt.Errorf("subscription to %s refused (SUBACK 0x80)", filter)
		}
		if body[2] > 2 {
			return protoErr("SUBACK return code %#x", body[2])
		}
		return nil
	case <-c.done:
		return fmt.Errorf("connection ended before the SUBACK: %w", c.failure())
	case <-t.C:
		return fmt.Errorf("no SUBACK within %v", timeout)
	}
}

// keepalive sends a PINGREQ every 3/4 keepalive and ends the connection
// when nothing at all arrived since the previous one.
func (c *rawConn) keepalive(ka time.Duration) {
	t := time.NewTicker(ka * 3 / 4)
	defer t.Stop()
	var pinged int64
	for {
		select {
		case <-c.stop:
			return
		case <-c.done:
			return
		case <-t.C:
			if pinged != 0 && c.lastRecv.Load() < pinged {
				c.fail(fmt.Errorf("no PINGRESP (nor anything else) from the broker within %v", ka*3/4))
				return
			}
			pinged = time.Now().UnixNano()
			if err := c.write([]byte{pktPingreq << 4, 0}); err != nil {
				c.fail(fmt.Errorf("send PINGREQ: %w", err))
				return
			}
		}
	}
}

// fail ends the connection with err (the first reason wins) and tells the
// owner once.
func (c *rawConn) fail(err error) {
	c.errMu.Lock()
	first := c.err == nil
	if first {
		if c.closing.Load() {
			err = errors.New("connection closed")
		}
		c.err = err
	}
	c.errMu.Unlock()
	if !first {
		return
	}
	_ = c.conn.Close()
	if !c.closing.Load() {
		connLost.Add(1)
	}
	if c.cb.closed != nil {
		c.cb.closed(err)
	}
}

func (c *rawConn) failure() error {
	c.errMu.Lock()
	defer c.errMu.Unlock()
	if c.err == nil {
		return errors.New("connection closed")
	}
	return c.err
}

// Close sends DISCONNECT, closes the socket and waits for the reader.
// More calls are harmless.
func (c *rawConn) Close() {
	c.stopOnce.Do(func() {
		c.closing.Store(true)
		close(c.stop)
		c.wmu.Lock()
		_ = c.conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.conn.Write([]byte{pktDisconnect << 4, 0})
		c.wmu.Unlock()
		c.fail(errors.New("connection closed"))
	})
	<-c.done
}

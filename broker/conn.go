package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/poller"
)

// Connection states (conn.state).
const (
	stNew       int32 = iota // accepted, waiting for CONNECT
	stConnected              // CONNACK sent, session attached
	stClosing                // ending: no new work is accepted
)

// readBufSize is the reader's buffer; larger packets are assembled in a
// buffer sized for them.
const readBufSize = 4096

// writeTimeout bounds one write to a client: a client that stops reading
// for that long is disconnected.
const writeTimeout = 10 * time.Second

// maxPendingAcks is how many acknowledgements a client may have waiting
// for the store before the broker stops reading its socket (backpressure
// at the rate the store commits).
const maxPendingAcks = 1024

// outItem is a packet waiting to be written. A non-zero gate holds it (and
// everything queued after it) until the store has committed batch gate.
type outItem struct {
	b    []byte
	gate uint64
	ack  bool // an acknowledgement counted in pendingAcks
	// puback: a PUBACK for a client's QoS 1 publish (counted in
	// pubacksQueued until written: Receive Maximum counts it unanswered).
	puback bool
}

// conn is one MQTT network connection. Its reader (a goroutine per
// connection, running serve) decodes and handles packets in order; output
// goes through out, a FIFO drained by a writer goroutine that exists only
// while something is queued.
type conn struct {
	s         *Server
	nc        net.Conn // closed through this (it frees the connection's slot)
	raw       net.Conn // nc without the gate's wrapper: writes (writev) and CloseWrite
	listener  string
	remote    string
	transport string
	number    uint64 // connection number (presence "conn")

	// Set while handling CONNECT, read-only once state is stConnected.
	version     byte
	clientID    string
	identity    auth.Identity
	keepalive   time.Duration
	maxOut      uint32 // client's maximum packet size; 0 = none
	recvMax     uint16 // client's receive maximum (send window)
	sess        *session
	takeover    bool
	connectedAt time.Time

	state    atomic.Int32
	lastRead atomic.Int64 // unix nanoseconds of the last bytes read
	cause    atomic.Pointer[endCause]

	// Reader-only state.
	subRate limit.Bucket // limits.subscribe_rate
	// published: a PUBLISH was handled since the reader last checked the
	// publisher throttle.
	published bool
	partial   []byte // an incomplete packet
	need      int    // bytes the partial packet will have
	aliases   map[uint16]string

	// Output.
	wmu         sync.Mutex
	out         []outItem
	outBytes    int
	queued0     int // QoS 0 publishes in out (bounded by max_queued_messages)
	pendingAcks int // acks in out not yet written
	// pubacksQueued counts PUBACKs queued and not yet written.
	pubacksQueued atomic.Int32
	// throttled: the publisher throttle holds the reader (a polled
	// connection is then not armed: whoever clears the flag arms it).
	throttled   atomic.Bool
	writing     bool
	waitingGate uint64 // gate a store waiter is registered for
	closed      bool
	closeAfter  bool // close once out is written (DISCONNECT queued)
	written     bool // the last packet was written after closeAfter
	ackRoom     *sync.Cond

	detached chan struct{} // closed when the connection is fully cleaned up

	// pl is set when the poller drives the connection (no reader
	// goroutine); nil when serve runs it.
	pl *pollIO
}

// endCause is why a connection ended.
type endCause struct {
	err    error
	reason string // ReasonX
	code   byte   // MQTT 5 DISCONNECT reason sent by the server, if any
}

func newConn(s *Server, nc net.Conn, listener string) *conn {
	raw := nc
	if g, ok := nc.(*gatedConn); ok {
		raw = g.Conn // a *net.TCPConn: net.Buffers are written with one writev
	}
	c := &conn{s: s, nc: nc, raw: raw, listener: listener, remote: nc.RemoteAddr().String(), transport: transportOf(listener),
		detached: make(chan struct{})}
	c.ackRoom = sync.NewCond(&c.wmu)
	c.subRate = s.newSubscribeBucket()
	c.lastRead.Store(time.Now().UnixNano())
	return c
}

// serve runs the connection until it ends, then cleans up. It is the
// reader goroutine.
func (c *conn) serve() {
	defer func() {
		if r := recover(); r != nil {
			c.s.log.Error("panic while handling a connection; connection closed", "remote", c.remote, "client", c.clientID,
				"panic", r, "stack", string(debug.Stack()))
			c.end(&endCause{err: errPanic, reason: ReasonWill})
		}
		c.cleanup()
	}()
	c.s.clock.watchConnect(c)
	buf := make([]byte, readBufSize)
	for {
		n, err := c.nc.Read(buf)
		if n > 0 {
			c.lastRead.Store(time.Now().UnixNano())
			c.s.metrics.bytesIn.Add(uint64(n))
			if herr := c.feed(buf[:n]); herr != nil {
				c.fail(herr)
				return
			}
			c.flush()
			c.waitAckRoom()
			if c.published {
				c.published = false
				c.s.throttle.wait(c)
			}
		}
		if err != nil {
			c.fail(err)
			return
		}
		if c.state.Load() == stClosing {
			return
		}
	}
}

// errPanic reports a connection that crashed its handler.
var errPanic = errors.New("internal error while handling the connection")

// feed frames and handles the packets in data. Packets may span calls:
// an incomplete packet is kept in c.partial, sized for the whole packet
// once its header is known (never more than limits.max_packet_size).
func (c *conn) feed(data []byte) error {
	if c.partial != nil {
		if c.need < 0 {
			// The header itself was incomplete: parse again from the
			// bytes kept plus the new ones (rare: a header is <= 5 bytes).
			data = append(c.partial, data...)
			c.partial, c.need = nil, 0
		} else {
			k := min(c.need-len(c.partial), len(data))
			c.partial = append(c.partial, data[:k]...)
			data = data[k:]
			if len(c.partial) < c.need {
				return nil
			}
			pkt := c.partial
			c.partial, c.need = nil, 0
			if err := c.handleFrame(pkt); err != nil {
				return err
			}
		}
	}
	for len(data) > 0 && c.state.Load() != stClosing {
		if err := c.checkFirstByte(data[0]); err != nil {
			return err
		}
		_, rem, hdr, ok, err := frameHeader(data)
		if err != nil {
			return err
		}
		if !ok {
			c.partial = append(make([]byte, 0, 8), data...)
			c.need = -1
			return nil
		}
		if uint64(rem) > uint64(c.s.cfg.Limits.MaxPacketSize) {
			return errTooLarge
		}
		total := hdr + rem
		if len(data) < total {
			c.partial = append(make([]byte, 0, total), data...)
			c.need = total
			return nil
		}
		if err := c.handleFrame(data[:total]); err != nil {
			return err
		}
		data = data[total:]
	}
	return nil
}

// checkFirstByte refuses a packet from its first byte, without waiting for
// the rest: invalid type or flags, or anything but CONNECT first.
func (c *conn) checkFirstByte(b byte) error {
	var fh packets.FixedHeader
	if err := fh.Decode(b); err != nil {
		return err
	}
	if c.state.Load() == stNew && fh.Type != packets.Connect {
		return fmt.Errorf("%w: first packet is %s, not CONNECT", errMalformed, packets.PacketNames[fh.Type])
	}
	return nil
}

// fail ends the connection after a read or protocol error.
func (c *conn) fail(err error) {
	if c.state.Load() == stClosing {
		c.closeNet()
		return
	}
	ec := &endCause{err: err, reason: ReasonWill}
	var code packets.Code
	switch {
	case errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.Is(err, io.ErrUnexpectedEOF):
	case errors.Is(err, errTooLarge):
		ec.code = packets.ErrPacketTooLarge.Code
	case errors.As(err, &code):
		ec.code = code.Code
	case errors.Is(err, errMalformed):
		ec.code = packets.ErrMalformedPacket.Code
	}
	if c.state.Load() == stConnected && ec.code >= 0x80 && c.version == 5 {
		c.disconnect(ec)
		return
	}
	c.end(ec)
}

// end records why the connection ends (the first cause wins) and closes it.
func (c *conn) end(ec *endCause) {
	c.cause.CompareAndSwap(nil, ec)
	c.state.Store(stClosing)
	c.closeNet()
}

// disconnect sends an MQTT 5 DISCONNECT with ec.code (after what is
// already queued) and then closes the connection; MQTT 3 clients are just
// closed. A writer that cannot finish within a second is cut off.
func (c *conn) disconnect(ec *endCause) {
	st := c.state.Load() // version is only read once CONNECT was handled
	if !c.cause.CompareAndSwap(nil, ec) {
		c.closeNet()
		return
	}
	c.state.Store(stClosing)
	if st != stConnected || c.version != 5 || ec.code == 0 {
		c.closeNet()
		return
	}
	b, _ := encode((&packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Disconnect}, ProtocolVersion: 5, ReasonCode: ec.code}).DisconnectEncode)
	c.wmu.Lock()
	c.out = append(c.out, outItem{b: b})
	c.closeAfter = true
	c.wmu.Unlock()
	c.kick()
	c.s.clock.closeLater(c, time.Second)
}

// finishWriting runs when the last packet (a refusal CONNACK, a
// DISCONNECT) has been written: the write side is shut, so the client
// reads everything up to that packet, and the reader then drains what the
// client still sends for a moment before closing (closing with unread data
// would reset the connection and lose the packet).
func (c *conn) finishWriting() {
	if cw, ok := c.raw.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	c.wmu.Lock()
	c.written = true
	c.ackRoom.Broadcast()
	c.wmu.Unlock()
}

// linger reads and discards what the client still sends, until it closes
// or a second has passed.
func (c *conn) linger() {
	_ = c.nc.SetReadDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 512)
	for n := 0; n < 4<<20; {
		k, err := c.nc.Read(buf)
		n += k
		if err != nil {
			return
		}
	}
}

// closeNet closes the network connection (idempotent).
func (c *conn) closeNet() {
	c.wmu.Lock()
	already := c.closed
	c.closed = true
	c.out = nil
	c.ackRoom.Broadcast()
	resume := c.resumeLocked()
	c.wmu.Unlock()
	if c.pl != nil {
		if c.throttled.CompareAndSwap(true, false) {
			c.s.throttle.forget(c)
			resume = true // its reader must see the close
		}
		c.closePolled(already, resume)
		return
	}
	if !already {
		_ = c.nc.Close()
	}
}

// send queues b for writing after everything queued before it, held until
// store batch gate is committed (0: no gate). Call flush (or kick) to
// start writing; the reader flushes once per read batch.
func (c *conn) send(b []byte, gate uint64) {
	c.wmu.Lock()
	if !c.closed && !c.closeAfter {
		c.out = append(c.out, outItem{b: b, gate: gate})
		c.outBytes += len(b)
	}
	c.wmu.Unlock()
}

// sendAck queues an acknowledgement (counted for backpressure).
func (c *conn) sendAck(b []byte, gate uint64) {
	c.wmu.Lock()
	if !c.closed && !c.closeAfter {
		c.out = append(c.out, outItem{b: b, gate: gate, ack: true})
		c.outBytes += len(b)
		c.pendingAcks++
	}
	c.wmu.Unlock()
}

// sendPuback queues the PUBACK of a client's QoS 1 publish.
func (c *conn) sendPuback(b []byte, gate uint64) {
	c.wmu.Lock()
	if !c.closed && !c.closeAfter {
		c.out = append(c.out, outItem{b: b, gate: gate, ack: true, puback: true})
		c.outBytes += len(b)
		c.pendingAcks++
		c.pubacksQueued.Add(1)
	}
	c.wmu.Unlock()
}

// sendQoS0 queues a QoS 0 publish unless the client's queue of them is
// full (limits.max_queued_messages); it reports whether it was queued.
func (c *conn) sendQoS0(b []byte, gate uint64) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed || c.closeAfter {
		return false
	}
	if c.queued0 >= int(c.s.cfg.Limits.MaxQueuedMessages) {
		return false
	}
	c.out = append(c.out, outItem{b: b, gate: gate})
	c.outBytes += len(b)
	c.queued0++
	return true
}

// flush starts the writer if anything is queued (called by the reader at
// the end of a read batch, coalescing that batch's output).
func (c *conn) flush() { c.kick() }

// kick starts writing unless a writer is running. While a poller handles
// a read batch, a polled connection is written at the batch's end, on the
// poller goroutine, without blocking (one writev for everything queued;
// only what the socket does not take goes to a writer goroutine).
// Otherwise (an in-process publish, a store commit, a goroutine-served
// connection) a writer goroutine is started: under a burst it carries many
// packets per write.
func (c *conn) kick() {
	c.wmu.Lock()
	if c.writing || c.closed || len(c.out) == 0 {
		c.wmu.Unlock()
		return
	}
	c.writing = true
	c.wmu.Unlock()
	if c.pl != nil && c.pl.flush.later(c) {
		return // written at the end of the current read batches
	}
	c.s.writers.Add(1)
	go c.writeLoop(nil)
}

// Committed is called by the store when a batch this connection waits for
// is committed.
func (c *conn) Committed() {
	c.wmu.Lock()
	c.waitingGate = 0
	c.wmu.Unlock()
	c.kick()
}

// maxIOV bounds the packets of one writev (the kernel's IOV_MAX is 1024).
const maxIOV = 1024

// wbatch is a run of queued packets taken for one write.
type wbatch struct {
	bufs          net.Buffers
	size          int
	acks, pubacks int
}

// nextBatch takes the packets that may be written now off the queue (up
// to a gate the store has not committed). With none it clears writing,
// registers for the gate or finishes a closing connection, and returns
// false: the caller stops writing.
func (c *conn) nextBatch(b *wbatch) bool {
	committed := c.s.committed()
	c.wmu.Lock()
	if c.closed {
		c.writing = false
		c.wmu.Unlock()
		return false
	}
	n, zeros := 0, 0
	for n < len(c.out) && n < maxIOV && c.out[n].gate <= committed && b.size < 1<<20 {
		it := c.out[n]
		b.bufs = append(b.bufs, it.b)
		b.size += len(it.b)
		if it.ack {
			b.acks++
			if it.puback {
				b.pubacks++
			}
		} else if isQoS0Publish(it.b) {
			zeros++
		}
		n++
	}
	if n == 0 {
		var gate uint64
		if len(c.out) > 0 {
			gate = c.out[0].gate
		}
		c.writing = false
		register := gate != 0 && c.waitingGate != gate
		if register {
			c.waitingGate = gate
		}
		closeNow := len(c.out) == 0 && c.closeAfter
		c.wmu.Unlock()
		if register && !c.s.store.Wait(gate, c) {
			c.Committed()
		}
		if closeNow {
			c.finishWriting()
		}
		return false
	}
	clear(c.out[:n])
	switch {
	case n < len(c.out):
		c.out = c.out[n:]
	case cap(c.out) <= 8:
		c.out = c.out[:0] // reused by the next packets
	default:
		c.out = nil // a burst's large queue is not kept
	}
	c.outBytes -= b.size
	c.queued0 -= zeros
	c.wmu.Unlock()
	return true
}

// wrote accounts for a batch written (or abandoned after an error).
func (c *conn) wrote(b *wbatch) {
	c.s.metrics.bytesOut.Add(uint64(b.size))
	if b.acks > 0 {
		c.pubacksQueued.Add(int32(-b.pubacks))
		c.wmu.Lock()
		c.pendingAcks -= b.acks
		c.ackRoom.Broadcast()
		resume := c.resumeLocked()
		c.wmu.Unlock()
		if resume {
			c.arm()
		}
	}
	clear(b.bufs)
	b.bufs, b.size, b.acks, b.pubacks = b.bufs[:0], 0, 0, 0
}

// writeFailed ends the connection after a failed write.
func (c *conn) writeFailed(err error) {
	c.end(&endCause{err: err, reason: ReasonWill})
	c.wmu.Lock()
	c.writing = false
	c.wmu.Unlock()
}

// writeInline writes a polled connection's queue without blocking; a
// batch the socket does not fully take is finished by a writer goroutine.
func (c *conn) writeInline() {
	iov := iovPool.Get().(*net.Buffers)
	b := wbatch{bufs: (*iov)[:0]}
	defer func() {
		clear(b.bufs[:cap(b.bufs)])
		if cap(b.bufs) <= maxIOV {
			*iov = b.bufs[:0]
			iovPool.Put(iov)
		}
	}()
	for c.nextBatch(&b) {
		n, err := c.pl.io.Writev(b.bufs)
		if err != nil && !errors.Is(err, poller.ErrWouldBlock) {
			c.wrote(&b)
			c.writeFailed(err)
			return
		}
		if n < b.size {
			rest := &wbatch{bufs: skipBytes(append(net.Buffers(nil), b.bufs...), n), size: b.size, acks: b.acks, pubacks: b.pubacks}
			c.s.writers.Add(1)
			go c.writeLoop(rest)
			return
		}
		c.wrote(&b)
	}
}

// iovPool holds the packet lists of inline writes (no allocation per
// write).
var iovPool = sync.Pool{New: func() any { b := make(net.Buffers, 0, 16); return &b }}

// skipBytes drops the first n bytes of bufs.
func skipBytes(bufs net.Buffers, n int) net.Buffers {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			break
		}
		n -= len(bufs[0])
		bufs[0] = nil
		bufs = bufs[1:]
	}
	return bufs
}

// writeLoop writes queued packets until the queue is empty or held by a
// gate, then exits. first, if not nil, is the unwritten rest of a batch
// to finish first (its size counts the whole batch).
func (c *conn) writeLoop(first *wbatch) {
	defer c.s.writers.Done()
	var b wbatch
	if first != nil {
		b = *first
	}
	for first != nil || c.nextBatch(&b) {
		first = nil
		_ = c.raw.SetWriteDeadline(time.Now().Add(writeTimeout))
		bufs := b.bufs
		_, err := bufs.WriteTo(c.raw)
		c.wrote(&b)
		if err != nil {
			c.writeFailed(err)
			return
		}
	}
}

func isQoS0Publish(b []byte) bool {
	return len(b) > 0 && b[0]>>4 == packets.Publish && (b[0]>>1)&3 == 0
}

// waitAckRoom blocks the reader while too many acknowledgements wait for
// the store: the client is then read at the rate its messages are stored.
func (c *conn) waitAckRoom() {
	c.wmu.Lock()
	for c.pendingAcks >= maxPendingAcks && !c.closed {
		c.ackRoom.Wait()
	}
	c.wmu.Unlock()
}

// log returns a logger with the connection's attributes.
func (c *conn) log() *slog.Logger {
	return c.s.log.With("client", c.clientID, "remote", c.remote)
}

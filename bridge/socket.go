package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/scproto"
)

// Protocol versions of a socket (socket.proto).
const (
	protoUnknown int32 = 0 // auto mode, no pong yet: ping with both
	protoV1      int32 = 1
	protoV2      int32 = 2
)

// Batching bounds: queued frames are coalesced into JSON arrays of at most
// this many bytes (a larger single frame goes alone).
const maxBatchBytes = 256 << 10

// closeGrace is how long the bridge waits for the client's close frame
// after sending its own.
const closeGrace = time.Second

// lingerBytes bounds what a lingering close reads and discards (see
// lingerClose).
const lingerBytes = 4 << 20

// newSocketID returns "$" and 20 URL-safe random characters (the shape of
// SocketCluster's base64id ids). The "$" keeps socket ids apart from MQTT
// client ids, which the broker refuses when they start with "$": no MQTT
// client can pose as a socket in presence.
func newSocketID() string {
	var b [15]byte
	rand.Read(b[:])
	return "$" + base64.RawURLEncoding.EncodeToString(b[:])
}

// closeReq is a decision to close the socket. The first one wins.
type closeReq struct {
	info CloseInfo
	// flush writes the frames already queued before the close frame.
	flush bool
	// sendFrame writes a close frame (false when the client already closed
	// or the connection is gone).
	sendFrame bool
}

// socket is one SocketCluster connection. Exactly two goroutines serve it:
// the reader (the HTTP handler's goroutine, which also handles every
// inbound event) and the writer (writeLoop), which alone writes data frames
// and pings. Other goroutines only enqueue frames or request a close.
type socket struct {
	h           *Handler
	conn        *websocket.Conn
	id          string
	remote      string
	connectedAt time.Time
	session     *Session
	ctx         context.Context
	cancel      context.CancelFunc

	identity   atomic.Pointer[Identity]
	proto      atomic.Int32
	handshaken bool          // reader goroutine only
	opened     chan struct{} // closed after the handshake: the writer starts pinging
	writerDone chan struct{}

	// stateMu guards subs and identity changes; held by the reader while it
	// handles an action and by reloads while they re-check the socket.
	stateMu sync.Mutex
	subs    map[string]*member
	tok     atomic.Pointer[token] // the token the socket is authenticated with; nil when anonymous

	// obsMu orders the session's reports to the Observer and guards the
	// login timeout (see admission.go).
	obsMu      sync.Mutex
	live       bool // the handshake is done
	admitted   bool // SocketOpened reported, SocketClosed not yet
	ended      bool // closed: no more reports
	loginTimer *time.Timer
	loginGen   uint64 // invalidates a timer that fires after being stopped

	loginFailures int         // reader goroutine only
	loginPending  atomic.Bool // a failed login's answer is being delayed

	// Reader goroutine only: request budgets, and the subscriptions whose
	// retained messages are still to be sent (see replayRetained).
	subBudget    limit.Bucket
	invokeBudget limit.Bucket
	replays      []*member

	// qmu guards the outbound queue and the close decision.
	qmu      sync.Mutex
	queue    [][]byte
	spare    [][]byte
	queued   int // bytes in queue and being written
	closeReq *closeReq
	wake     chan struct{}

	// dlMu orders read-deadline changes between the reader (extending it
	// on activity) and the writer (shortening it when closing).
	dlMu      sync.Mutex
	dlClosing bool
	lastExt   time.Time
}

func newSocket(h *Handler, conn *websocket.Conn, remote string) *socket {
	ctx, cancel := context.WithCancel(context.Background())
	s := &socket{
		h: h, conn: conn, id: newSocketID(), remote: remote, connectedAt: time.Now(),
		ctx: ctx, cancel: cancel,
		opened: make(chan struct{}), writerDone: make(chan struct{}),
		subs: make(map[string]*member), wake: make(chan struct{}, 1),
	}
	s.session = &Session{s: s}
	s.subBudget = limit.NewBucket(h.cfg.SubscribeRate, h.cfg.SubscribeBurst)
	s.invokeBudget = limit.NewBucket(h.cfg.InvokeRate, h.cfg.InvokeBurst)
	s.identity.Store(&Identity{ClientID: s.id, Anonymous: true})
	switch h.cfg.ProtocolVersion {
	case "1":
		s.proto.Store(protoV1)
	case "2":
		s.proto.Store(protoV2)
	}
	return s
}

// enqueue queues frames for the writer, together (so that they go out in
// one batch when the writer is idle). It never blocks. A socket whose queue
// would exceed max_queue_bytes is closed as a slow consumer. It returns
// false when the frames were not queued.
func (s *socket) enqueue(frames ...[]byte) bool {
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	s.qmu.Lock()
	if s.closeReq != nil {
		s.qmu.Unlock()
		return false
	}
	if s.queued+n > s.h.cfg.MaxQueueBytes {
		s.closeReq = &closeReq{
			info:      CloseInfo{Code: CloseSlowConsumer, Reason: "slow consumer: outbound queue exceeded bridge.max_queue_bytes"},
			sendFrame: true,
		}
		clear(s.queue)
		s.queue = s.queue[:0]
		s.qmu.Unlock()
		s.h.metrics.slowConsumers.Inc()
		s.h.log.Info("socket closed: slow consumer", "client", s.id, "remote", s.remote, "max_queue_bytes", s.h.cfg.MaxQueueBytes)
		s.signal()
		return false
	}
	s.queue = append(s.queue, frames...)
	s.queued += n
	s.qmu.Unlock()
	s.signal()
	return true
}

func (s *socket) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// close asks for the socket to be closed; the first request wins. It never
// blocks.
func (s *socket) close(code int, reason string, flush bool) {
	s.requestClose(&closeReq{info: CloseInfo{Code: code, Reason: reason}, flush: flush, sendFrame: true})
}

func (s *socket) requestClose(r *closeReq) {
	s.qmu.Lock()
	if s.closeReq == nil {
		s.closeReq = r
		if !r.flush {
			clear(s.queue)
			s.queue = s.queue[:0]
		}
	}
	s.qmu.Unlock()
	s.signal()
}

// closeInfo returns how the socket ended (after the reader exited).
func (s *socket) closeInfo() CloseInfo {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	if s.closeReq == nil {
		return CloseInfo{Code: 1006}
	}
	return s.closeReq.info
}

func (s *socket) closing() bool {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	return s.closeReq != nil
}

// take removes the queued frames for writing.
func (s *socket) take() (frames [][]byte, req *closeReq) {
	s.qmu.Lock()
	defer s.qmu.Unlock()
	frames = s.queue
	s.queue, s.spare = s.spare[:0], nil
	return frames, s.closeReq
}

// written returns the buffer of written frames and their bytes to the
// queue's accounting.
func (s *socket) written(frames [][]byte, n int) {
	clear(frames)
	s.qmu.Lock()
	s.queued -= n
	if s.spare == nil && cap(frames) <= 1024 {
		s.spare = frames[:0]
	}
	s.qmu.Unlock()
}

// writeLoop is the socket's only writer of data frames and pings.
func (s *socket) writeLoop() {
	defer close(s.writerDone)
	var tick <-chan time.Time
	opened := s.opened
	for {
		select {
		case <-s.wake:
		case <-opened:
			t := time.NewTicker(s.h.cfg.PingInterval)
			defer t.Stop()
			tick, opened = t.C, nil
			continue
		case <-tick:
			if err := s.writePings(); err != nil {
				s.writeFailed(err)
				return
			}
		}
		frames, req := s.take()
		n := 0
		for _, f := range frames {
			n += len(f)
		}
		var err error
		if len(frames) > 0 && (req == nil || req.flush) {
			err = s.writeFrames(frames)
		}
		s.written(frames, n)
		if err != nil {
			s.writeFailed(err)
			return
		}
		if req != nil {
			if req.sendFrame {
				msg := websocket.FormatCloseMessage(req.info.Code, truncateReason(req.info.Reason))
				_ = s.conn.WriteControl(websocket.CloseMessage, msg, time.Now().Add(min(s.h.cfg.WriteTimeout, closeGrace)))
			}
			s.shortenReadDeadline(time.Now().Add(closeGrace))
			return
		}
	}
}

// truncateReason keeps a close reason within the 123 bytes a close frame
// allows.
func truncateReason(r string) string {
	if len(r) > 123 {
		r = r[:123]
	}
	return r
}

// writeFailed ends the socket after a failed write (the client stopped
// reading or the connection broke).
func (s *socket) writeFailed(err error) {
	s.requestClose(&closeReq{info: CloseInfo{Code: 1006, Reason: "write failed: " + err.Error()}})
	s.shortenReadDeadline(time.Now())
}

func (s *socket) writePings() error {
	deadline := time.Now().Add(s.h.cfg.WriteTimeout)
	switch s.proto.Load() {
	case protoV1:
		return s.writeText(scproto.PingV1, deadline)
	case protoV2:
		return s.writeText(scproto.PingV2, deadline)
	}
	if err := s.writeText(scproto.PingV2, deadline); err != nil {
		return err
	}
	return s.writeText(scproto.PingV1, deadline)
}

func (s *socket) writeText(msg string, deadline time.Time) error {
	_ = s.conn.SetWriteDeadline(deadline)
	return s.conn.WriteMessage(websocket.TextMessage, []byte(msg))
}

// writeFrames writes queued frames, several at a time as a JSON array
// batch (both socketcluster-client 14 and 20 accept arrays).
func (s *socket) writeFrames(frames [][]byte) error {
	for len(frames) > 0 {
		k, size := 1, len(frames[0])
		for k < len(frames) && size+len(frames[k])+1 <= maxBatchBytes {
			size += len(frames[k]) + 1
			k++
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(s.h.cfg.WriteTimeout))
		w, err := s.conn.NextWriter(websocket.TextMessage)
		if err != nil {
			return err
		}
		if k == 1 {
			_, err = w.Write(frames[0])
		} else {
			_, err = w.Write([]byte{'['})
			for i := 0; i < k && err == nil; i++ {
				if i > 0 {
					_, err = w.Write([]byte{','})
				}
				if err == nil {
					_, err = w.Write(frames[i])
				}
			}
			if err == nil {
				_, err = w.Write([]byte{']'})
			}
		}
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		frames = frames[k:]
	}
	return nil
}

// extendReadDeadline records inbound activity: the socket may stay silent
// for ping_timeout from now. It resets the deadline at most once per
// ping_timeout/8.
func (s *socket) extendReadDeadline(now time.Time) {
	s.dlMu.Lock()
	if !s.dlClosing && now.Sub(s.lastExt) >= s.h.cfg.PingTimeout/8 {
		s.lastExt = now
		_ = s.conn.SetReadDeadline(now.Add(s.h.cfg.PingTimeout))
	}
	s.dlMu.Unlock()
}

func (s *socket) shortenReadDeadline(t time.Time) {
	s.dlMu.Lock()
	s.dlClosing = true
	_ = s.conn.SetReadDeadline(t)
	s.dlMu.Unlock()
}

// run serves the socket until it closes: it starts the writer, reads and
// handles frames, then cleans up. It runs on the HTTP handler's goroutine.
func (s *socket) run() {
	go s.writeLoop()
	s.conn.SetReadLimit(int64(s.h.cfg.MaxFrameSize))
	_ = s.conn.SetReadDeadline(s.connectedAt.Add(s.h.cfg.HandshakeTimeout))
	var rerr error
	for {
		mt, data, err := s.conn.ReadMessage()
		if err != nil {
			rerr = err
			break
		}
		if s.closing() {
			continue // wait for the client's close frame
		}
		if mt == websocket.TextMessage && !utf8.Valid(data) {
			s.h.log.Debug("socket closed: text frame is not UTF-8", "client", s.id, "remote", s.remote)
			s.close(CloseInvalidPayload, "text frame is not valid UTF-8", false)
			continue
		}
		if s.handshaken {
			s.extendReadDeadline(time.Now())
		}
		s.handleFrame(data)
	}
	s.readFailed(rerr)
	// The writer ends once it has written the close frame, or at the
	// latest when its current write times out.
	select {
	case <-s.writerDone:
	case <-time.After(s.h.cfg.WriteTimeout + closeGrace):
		_ = s.conn.Close()
		<-s.writerDone
	}
	if errors.Is(rerr, websocket.ErrReadLimit) {
		s.lingerClose()
	}
	_ = s.conn.Close()
	s.cleanup()
}

// lingerClose is for a close the bridge sent while the client is still
// sending (the rest of an oversized frame). Closing the TCP connection with
// unread data makes the kernel answer with a reset, which destroys the
// close frame on its way and makes the client report 1006 instead of the
// bridge's code. So the bridge half-closes its side (the client reads the
// close frame, then the end of the stream) and reads and discards what
// still arrives until the client closes, for at most closeGrace and
// lingerBytes.
func (s *socket) lingerClose() {
	nc := s.conn.UnderlyingConn()
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = nc.SetReadDeadline(time.Now().Add(closeGrace))
	_, _ = io.CopyN(io.Discard, nc, lingerBytes)
}

// readFailed turns the reader's error into the socket's close decision.
func (s *socket) readFailed(err error) {
	var ce *websocket.CloseError
	var ne net.Error
	switch {
	case errors.As(err, &ce):
		// The client closed (or answered our close). gorilla has already
		// echoed the close frame.
		s.requestClose(&closeReq{info: CloseInfo{Code: ce.Code, Reason: ce.Text, Clean: ce.Code == CloseNormal || ce.Code == CloseGoingAway}})
	case errors.Is(err, websocket.ErrReadLimit):
		// gorilla has sent 1009.
		s.requestClose(&closeReq{info: CloseInfo{Code: CloseMessageTooBig, Reason: "frame larger than bridge.max_frame_size"}})
		if !s.handshaken {
			s.h.metrics.handshakesRefused.WithLabelValues("too_big").Inc()
		}
		s.h.log.Info("socket closed: frame too big", "client", s.id, "remote", s.remote, "max_frame_size", s.h.cfg.MaxFrameSize)
	case errors.As(err, &ne) && ne.Timeout() && !s.closing():
		if s.handshaken {
			s.close(ClosePongTimeout, "Client pong timed out", false)
			s.h.log.Debug("socket closed: pong timeout", "client", s.id, "remote", s.remote)
		} else {
			s.close(CloseHandshakeTimeout, "Did not receive #handshake from client before timeout", false)
			s.h.metrics.handshakesRefused.WithLabelValues("timeout").Inc()
			s.h.log.Debug("socket closed: no handshake", "client", s.id, "remote", s.remote)
		}
	default:
		s.requestClose(&closeReq{info: CloseInfo{Code: 1006, Reason: "connection lost"}})
	}
}

// cleanup leaves every channel and reports the close.
func (s *socket) cleanup() {
	s.cancel()
	s.stateMu.Lock()
	for ch, m := range s.subs {
		s.h.hub.remove(m)
		delete(s.subs, ch)
	}
	s.h.tokens.move(s, s.tok.Load(), nil)
	s.stateMu.Unlock()
	s.h.untrack(s)
	admitted := s.sessionEnded()
	if s.handshaken {
		s.h.metrics.sockets.Dec()
		info := s.closeInfo()
		s.h.log.Debug("socket closed", "client", s.id, "user", s.session.Username(), "remote", s.remote, "code", info.Code, "clean", info.Clean)
		if admitted && s.h.observer != nil {
			s.h.observer.SocketClosed(s.session, info)
		}
	}
}

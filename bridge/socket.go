package bridge

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/poller"
	"github.com/sockmq/sockmq/internal/ws"
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
// closeReq.linger).
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
	// sendFrame writes a close frame (false when the connection is gone).
	sendFrame bool
	// echo answers the client's close frame: the close frame carries the
	// client's code and no reason.
	echo bool
	// linger is for a close sent while the client is still sending (the
	// rest of an oversized frame). Closing the TCP connection with unread
	// data makes the kernel answer with a reset, which destroys the close
	// frame on its way and makes the client report 1006 instead of the
	// bridge's code. So the bridge half-closes its side after the close
	// frame (the client reads it, then the end of the stream) and reads and
	// discards what still arrives until the client closes, for at most
	// closeGrace and lingerBytes.
	linger bool
}

// Ping bits (socket.pings).
const (
	pingV2 = 1 << iota
	pingV1
)

// socket is one SocketCluster connection, detached from net/http after the
// upgrade. No goroutine belongs to an idle socket: the poller says when it
// is readable and a reader goroutine runs until everything available is
// read and handled (readBurst; with TLS or without epoll, one reader
// goroutine for the socket's life instead); a writer goroutine runs only
// while frames are queued (writeLoop); the handler's ping wheel sends
// pings and enforces the handshake and pong timeouts. Other goroutines
// only enqueue frames or request a close.
type socket struct {
	h           *Handler
	conn        net.Conn
	cio         *poller.ConnIO // nil: a blocking reader goroutine (TLS, no epoll)
	watch       *poller.Watch
	id          string
	remote      string
	connectedAt time.Time
	session     *Session

	identity   atomic.Pointer[Identity]
	proto      atomic.Int32
	hsDone     atomic.Bool  // the handshake is done (for the wheel)
	lastActive atomic.Int64 // unix nanoseconds of the last inbound bytes

	// Reader goroutine only (one at a time; the hand-over between reader
	// goroutines is ordered by qmu and the poller's re-arming).
	rd         ws.Reader
	handshaken bool
	discarding bool // after a protocol error: input is read and dropped
	discarded  int

	// stateMu guards subs, the procedure context and identity changes;
	// held by the reader while it handles an action and by reloads while
	// they re-check the socket.
	stateMu sync.Mutex
	subs    map[string]*member
	ctx     context.Context // made by the first procedure call
	cancel  context.CancelFunc
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

	// publishing counts publishes handed to the broker whose store
	// commit is still awaited (AsyncPublisher); at maxPendingPublishes
	// the reader waits for the store instead.
	publishing atomic.Int32

	// qmu guards the outbound queue, the close state and which goroutines
	// run for the socket.
	qmu     sync.Mutex
	queue   [][]byte
	spare   [][]byte
	queued  int    // bytes in queue and being written
	pings   uint8  // pings to send (pingV1, pingV2)
	pong    []byte // payload of the WebSocket ping to answer
	pongDue bool
	partial []byte // the rest of a frame a non-blocking write did not finish
	// partialQueued is how many bytes of partial count in queued (the
	// rest of a direct write; a ping's rest does not count).
	partialQueued int
	closeReq      *closeReq
	closeSent     bool // the writer is done with the close decision
	closeRecv     bool // the client's close frame arrived
	connClosed    bool
	cleaned       bool
	reading       bool // a reader goroutine runs
	stopRead      bool // nothing more is read (the client's close arrived)
	writing       bool // a writer goroutine runs
	grace         *time.Timer

	// Ping wheel state, guarded by the wheel's lock (nextPing: the wheel
	// goroutine only).
	wPrev, wNext *socket
	wSlot        int32 // -1: not in the wheel
	wDead        bool
	nextPing     time.Time
}

func newSocket(h *Handler, conn net.Conn, remote string) *socket {
	s := &socket{
		h: h, conn: conn, id: newSocketID(), remote: remote, connectedAt: time.Now(),
		subs: make(map[string]*member), wSlot: -1,
	}
	s.session = &Session{s: s}
	s.subBudget = limit.NewBucket(h.cfg.SubscribeRate, h.cfg.SubscribeBurst)
	s.invokeBudget = limit.NewBucket(h.cfg.InvokeRate, h.cfg.InvokeBurst)
	s.rd.MaxMessage = h.cfg.MaxFrameSize
	s.identity.Store(&Identity{ClientID: s.id, Anonymous: true})
	s.lastActive.Store(s.connectedAt.UnixNano())
	switch h.cfg.ProtocolVersion {
	case "1":
		s.proto.Store(protoV1)
	case "2":
		s.proto.Store(protoV2)
	}
	return s
}

// procContext returns the context procedures get, cancelled when the
// socket closes; it is made on first use.
func (s *socket) procContext() context.Context {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.qmu.Lock()
		gone := s.connClosed
		s.qmu.Unlock()
		if gone {
			s.cancel()
		}
	}
	return s.ctx
}

// closeInfo returns how the socket ended.
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

// closeConn closes the connection (once); the socket is cleaned up when
// its reader and writer goroutines, if any, have ended.
func (s *socket) closeConn() {
	s.qmu.Lock()
	if s.connClosed {
		s.qmu.Unlock()
		return
	}
	s.connClosed = true
	if s.closeReq == nil {
		s.closeReq = &closeReq{info: CloseInfo{Code: 1006, Reason: "connection lost"}}
	}
	if s.grace != nil {
		s.grace.Stop()
		s.grace = nil
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	done := s.finishedLocked()
	watch := s.watch
	s.qmu.Unlock()
	if watch != nil {
		watch.Close()
	}
	_ = s.conn.Close()
	s.h.wheel.remove(s)
	if done {
		s.cleanup()
	}
}

// finishedLocked reports (once) that the socket is closed and no reader or
// writer goroutine runs any more: the caller runs cleanup.
func (s *socket) finishedLocked() bool {
	if s.connClosed && !s.reading && !s.writing && !s.cleaned {
		s.cleaned = true
		return true
	}
	return false
}

// cleanup leaves every channel and reports the close.
func (s *socket) cleanup() {
	defer s.h.wg.Done()
	s.stateMu.Lock()
	if s.cancel != nil {
		s.cancel()
	}
	for ch, m := range s.subs {
		s.h.hub.remove(m)
		delete(s.subs, ch)
	}
	s.h.tokens.move(s, s.tok.Load(), nil)
	s.stateMu.Unlock()
	s.h.untrack(s)
	admitted := s.sessionEnded()
	if s.hsDone.Load() {
		s.h.metrics.sockets.Dec()
		info := s.closeInfo()
		s.h.log.Debug("socket closed", "client", s.id, "user", s.session.Username(), "remote", s.remote, "code", info.Code, "clean", info.Clean)
		if admitted && s.h.observer != nil {
			s.h.observer.SocketClosed(s.session, info)
		}
	}
}

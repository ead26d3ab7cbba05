package bridge

import (
	"errors"
	"runtime"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/sockmq/sockmq/internal/poller"
	"github.com/sockmq/sockmq/internal/ws"
)

// Reader goroutines read into pooled buffers, held only while they run: a
// small one first (a pong, a publish), a large one once a read fills the
// small one (a stream of publishes).
const (
	smallReadBufSize = 1 << 10
	readBufSize      = 16 << 10
)

var (
	smallReadBufs = sync.Pool{New: func() any { b := make([]byte, smallReadBufSize); return &b }}
	readBufs      = sync.Pool{New: func() any { b := make([]byte, readBufSize); return &b }}
)

// blockingReadBufSize is the buffer of a socket that keeps a reader
// goroutine (TLS or no epoll).
const blockingReadBufSize = 2 << 10

// errStopReading ends Feed after the client's close frame.
var errStopReading = errors.New("bridge: the client closed")

// onReadable runs on a poller goroutine when the socket is readable: it
// starts a reader goroutine, which re-arms the watch when it has read
// everything available.
func (s *socket) onReadable(int, []byte) {
	s.qmu.Lock()
	if s.connClosed || s.reading {
		s.qmu.Unlock()
		return
	}
	s.reading = true
	s.qmu.Unlock()
	go s.readBurst(nil)
	// The new goroutine waits in this P's run queue, and the poller is
	// about to hold the P in epoll_wait (a blocking system call) until the
	// runtime takes it back: yield, so that the reader runs now.
	runtime.Gosched()
}

// readBurst handles early (bytes that arrived with the upgrade request),
// then reads and handles everything the socket has until the read would
// block, then waits for the poller again. The caller has set s.reading.
func (s *socket) readBurst(early []byte) {
	ok := true
	if len(early) > 0 {
		s.lastActive.Store(time.Now().UnixNano())
		ok = s.consume(early)
	}
	if ok {
		pool := &smallReadBufs
		bp := pool.Get().(*[]byte)
		buf := *bp
		first := true
		for ok {
			n, err := s.cio.Read(buf)
			if n > 0 {
				if first {
					s.lastActive.Store(time.Now().UnixNano())
					first = false
				}
				ok = s.consume(buf[:n])
				if n == len(buf) && pool == &smallReadBufs {
					pool.Put(bp)
					pool = &readBufs
					bp = pool.Get().(*[]byte)
					buf = *bp
				}
			}
			if errors.Is(err, poller.ErrWouldBlock) {
				break
			}
			if err != nil {
				s.readFailed(err)
				ok = false
			}
		}
		pool.Put(bp)
	}
	s.qmu.Lock()
	s.reading = false
	arm := ok && !s.connClosed && !s.stopRead
	done := s.finishedLocked()
	s.qmu.Unlock()
	if done {
		s.cleanup()
	}
	if arm {
		if err := s.watch.Arm(poller.Readable); err != nil && !errors.Is(err, poller.ErrClosed) {
			s.readFailed(err)
		}
	}
}

// readBlocking is the reader of a socket the poller cannot drive: it
// blocks in Read for the socket's whole life.
func (s *socket) readBlocking(early []byte) {
	ok := true
	if len(early) > 0 {
		ok = s.consume(early)
	}
	buf := make([]byte, blockingReadBufSize)
	for ok {
		n, err := s.conn.Read(buf)
		if n > 0 {
			s.lastActive.Store(time.Now().UnixNano())
			ok = s.consume(buf[:n])
		}
		if err != nil && ok {
			s.readFailed(err)
			ok = false
		}
	}
	s.qmu.Lock()
	s.reading = false
	done := s.finishedLocked()
	s.qmu.Unlock()
	if done {
		s.cleanup()
	}
}

// consume decodes and handles bytes read from the socket. It returns false
// when nothing more is to be read.
func (s *socket) consume(b []byte) bool {
	if s.discarding {
		s.discarded += len(b)
		if s.discarded > lingerBytes {
			s.closeConn()
			return false
		}
		return true
	}
	var err error
	if bt := s.h.batcher; bt != nil {
		// Every publish of this read is delivered before anything is
		// written, so each subscriber gets them in one write.
		bt.BeginBatch()
		err = s.rd.Feed(b, s.onFrame)
		bt.EndBatch()
	} else {
		err = s.rd.Feed(b, s.onFrame)
	}
	if err == nil {
		return true
	}
	if errors.Is(err, errStopReading) {
		s.qmu.Lock()
		s.stopRead = true
		s.qmu.Unlock()
		return false
	}
	var pe *ws.ProtocolError
	if errors.As(err, &pe) {
		s.discarding = true
		if pe.Code == ws.CloseMessageTooBig {
			s.requestClose(&closeReq{info: CloseInfo{Code: CloseMessageTooBig, Reason: "frame larger than bridge.max_frame_size"}, sendFrame: true, linger: true})
			if !s.handshaken {
				s.h.metrics.handshakesRefused.WithLabelValues("too_big").Inc()
			}
			s.h.log.Info("socket closed: frame too big", "client", s.id, "remote", s.remote, "max_frame_size", s.h.cfg.MaxFrameSize)
			return true
		}
		s.h.log.Debug("socket closed: protocol error", "client", s.id, "remote", s.remote, "error", pe.Reason)
		s.requestClose(&closeReq{info: CloseInfo{Code: pe.Code, Reason: pe.Reason}, sendFrame: true, linger: true})
		return true
	}
	s.readFailed(err)
	return false
}

// onFrame handles one message or control frame.
func (s *socket) onFrame(op ws.Opcode, payload []byte) error {
	switch op {
	case ws.OpText, ws.OpBinary:
		if s.closing() {
			return nil // wait for the client's close frame
		}
		if op == ws.OpText && !utf8.Valid(payload) {
			s.h.log.Debug("socket closed: text frame is not UTF-8", "client", s.id, "remote", s.remote)
			s.close(CloseInvalidPayload, "text frame is not valid UTF-8", false)
			return nil
		}
		s.handleFrame(payload)
	case ws.OpPing:
		s.queuePong(payload)
	case ws.OpClose:
		code, reason, err := ws.ParseClose(payload)
		if err != nil {
			return err
		}
		s.qmu.Lock()
		s.closeRecv = true
		sent := s.closeSent
		s.qmu.Unlock()
		if sent {
			s.closeConn()
		} else {
			// The echo carries the client's code (none for 1005).
			s.requestClose(&closeReq{info: CloseInfo{Code: code, Reason: reason, Clean: code == CloseNormal || code == CloseGoingAway}, sendFrame: true, echo: true})
		}
		return errStopReading
	}
	return nil
}

// readFailed ends the socket after a failed read or the end of the stream.
func (s *socket) readFailed(error) {
	s.requestClose(&closeReq{info: CloseInfo{Code: 1006, Reason: "connection lost"}})
	s.closeConn()
}

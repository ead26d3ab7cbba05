package bridge

import (
	"errors"
	"sync"
	"time"

	"github.com/sockmq/sockmq/internal/poller"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/ws"
)

// Write buffers are pooled: a socket holds one only while its writer runs.
// Larger ones (a big batch) are dropped after use.
const (
	writeBufSize    = 4 << 10
	maxPooledWrite  = 64 << 10
	writeFlushBytes = 64 << 10
)

var writeBufs = sync.Pool{New: func() any { b := make([]byte, 0, writeBufSize); return &b }}

// enqueue hands frames to the socket, together (so that they go out in
// one batch). When nothing is queued or being written, the caller writes
// them at once without blocking (writeDirect); otherwise they are queued
// for the writer goroutine. It never blocks. A socket whose queue
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
		s.startWriterLocked()
		s.qmu.Unlock()
		s.h.metrics.slowConsumers.Inc()
		s.h.log.Info("socket closed: slow consumer", "client", s.id, "remote", s.remote, "max_queue_bytes", s.h.cfg.MaxQueueBytes)
		return false
	}
	s.queued += n
	if s.canWriteDirectLocked(len(frames), n) {
		s.writing = true // the caller (or the batch's end) is the writer
		if s.h.deferrer != nil {
			// Held for the end of the broker's read batch, which may
			// bring this socket more frames: one write for them all.
			s.queue = append(s.queue, frames...)
			s.qmu.Unlock()
			if !s.h.deferrer.DeferFlush(s) {
				s.FlushBatch()
			}
			return true
		}
		s.qmu.Unlock()
		s.writeDirect(frames, n)
		return true
	}
	s.queue = append(s.queue, frames...)
	s.startWriterLocked()
	s.qmu.Unlock()
	return true
}

// startWriterLocked starts the writer goroutine unless it runs already.
func (s *socket) startWriterLocked() {
	if !s.writing && !s.connClosed {
		s.writing = true
		go s.writeLoop()
	}
}

// queuePing sends the ping(s) of the socket's protocol version (both
// while it is unknown). When the socket has no writer and nothing queued,
// the caller (the ping wheel) writes them itself without blocking, so
// that pinging idle sockets starts no goroutine; what the socket does not
// take at once is left to a writer.
func (s *socket) queuePing() {
	var bits uint8
	switch s.proto.Load() {
	case protoV1:
		bits = pingV1
	case protoV2:
		bits = pingV2
	default:
		bits = pingV1 | pingV2
	}
	s.qmu.Lock()
	if s.closeReq != nil {
		s.qmu.Unlock()
		return
	}
	if s.cio == nil || s.writing || s.connClosed || len(s.queue) > 0 || s.pongDue || s.pings != 0 || len(s.partial) > 0 {
		s.pings |= bits
		s.startWriterLocked()
		s.qmu.Unlock()
		return
	}
	s.writing = true // the caller is the writer until it is done
	s.qmu.Unlock()
	var b [8]byte
	frame := appendPings(b[:0], bits)
	n, err := s.cio.Writev([][]byte{frame})
	s.qmu.Lock()
	s.writing = false
	switch {
	case err != nil && !errors.Is(err, poller.ErrWouldBlock):
		s.pings |= bits // the writer meets the error too and closes the socket
	case n < len(frame):
		s.partial = append(s.partial[:0], frame[n:]...)
	}
	if len(s.queue) > 0 || s.pongDue || s.pings != 0 || len(s.partial) > 0 || s.closeReq != nil {
		s.startWriterLocked()
	}
	done := s.finishedLocked()
	s.qmu.Unlock()
	if done {
		s.cleanup()
	}
}

// appendPings appends the ping frames for bits.
func appendPings(buf []byte, bits uint8) []byte {
	if bits&pingV2 != 0 {
		buf = ws.AppendFrame(buf, ws.OpText, []byte(scproto.PingV2))
	}
	if bits&pingV1 != 0 {
		buf = ws.AppendFrame(buf, ws.OpText, []byte(scproto.PingV1))
	}
	return buf
}

// queuePong answers a WebSocket ping (the latest one only, as RFC 6455
// allows).
func (s *socket) queuePong(payload []byte) {
	s.qmu.Lock()
	if s.closeReq == nil {
		s.pong = append(s.pong[:0], payload...)
		s.pongDue = true
		s.startWriterLocked()
	}
	s.qmu.Unlock()
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
		s.startWriterLocked()
	}
	s.qmu.Unlock()
}

// writeLoop writes what is queued (frames, pings, a pong, the close frame)
// and ends when nothing is left. It is the only writer of the connection.
func (s *socket) writeLoop() {
	bp := writeBufs.Get().(*[]byte)
	defer func() {
		if cap(*bp) <= maxPooledWrite {
			*bp = (*bp)[:0]
			writeBufs.Put(bp)
		}
	}()
	for {
		s.qmu.Lock()
		frames := s.queue
		s.queue, s.spare = s.spare[:0], nil
		pings, pongDue := s.pings, s.pongDue
		s.pings, s.pongDue = 0, false
		req := s.closeReq
		if s.closeSent {
			req = nil
		}
		buf := append((*bp)[:0], s.partial...) // the rest of a frame comes first
		s.partial = s.partial[:0]
		pq := s.partialQueued
		s.partialQueued = 0
		if pongDue {
			buf = ws.AppendFrame(buf, ws.OpPong, s.pong)
		}
		if len(buf) == 0 && len(frames) == 0 && pings == 0 && req == nil || s.connClosed {
			s.writing = false
			done := s.finishedLocked()
			s.qmu.Unlock()
			if done {
				s.cleanup()
			}
			return
		}
		s.qmu.Unlock()

		n := 0
		for _, f := range frames {
			n += len(f)
		}
		if req == nil || req.flush {
			buf = appendPings(buf, pings)
		}
		var err error
		if len(frames) > 0 && (req == nil || req.flush) {
			buf, err = s.writeFrames(buf, frames)
		}
		if err == nil && req != nil && req.sendFrame {
			if req.echo {
				buf = ws.AppendClose(buf, req.info.Code, "")
			} else {
				buf = ws.AppendClose(buf, req.info.Code, req.info.Reason)
			}
		}
		if err == nil && len(buf) > 0 {
			err = s.write(buf)
		}
		*bp = buf[:0]
		s.written(frames, n+pq)
		if err != nil {
			s.writeFailed(err)
			return
		}
		if req != nil {
			s.closeWritten(req)
		}
	}
}

// writeFailed ends the writer goroutine after a failed write. The
// connection is closed while the writer still counts as running, and the
// writer then ends like any other: the one of closeConn, the reader and
// the writer that finishes last runs cleanup. (Clearing s.writing before
// closeConn lost the cleanup when the connection had been closed already,
// typically by the reader meeting the client's end of stream while the
// writer wrote Shutdown's close frame: the write fails because of that
// close, closeConn returns at once, and nobody saw the socket finished.)
func (s *socket) writeFailed(err error) {
	s.requestClose(&closeReq{info: CloseInfo{Code: 1006, Reason: "write failed: " + err.Error()}})
	s.closeConn()
	s.qmu.Lock()
	s.writing = false
	done := s.finishedLocked()
	s.qmu.Unlock()
	if done {
		s.cleanup()
	}
}

// closeWritten runs after the close decision was acted on: the connection
// is closed at once if the client's close frame has arrived (or none will
// be sent), else after closeGrace at the latest.
func (s *socket) closeWritten(req *closeReq) {
	s.qmu.Lock()
	s.closeSent = true
	now := !req.sendFrame || s.closeRecv
	if !now && s.grace == nil && !s.connClosed {
		s.grace = time.AfterFunc(closeGrace, s.closeConn)
	}
	cio := s.cio
	s.qmu.Unlock()
	if now {
		s.closeConn()
		return
	}
	if req.linger {
		if cw, ok := s.conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		} else if cio != nil {
			_ = cio.CloseWrite()
		}
	}
}

// write writes buf whole, within bridge.write_timeout. A socket the poller
// watches is written without blocking first: usually the kernel takes it
// all, and the blocking write (a deadline timer, the runtime's system-call
// path) is needed only for what it refuses.
func (s *socket) write(buf []byte) error {
	if s.cio != nil {
		n, err := s.cio.Write(buf)
		switch {
		case err == nil && n == len(buf):
			return nil
		case err == nil || errors.Is(err, poller.ErrWouldBlock):
			buf = buf[n:]
		default:
			return err
		}
	}
	_ = s.conn.SetWriteDeadline(time.Now().Add(s.h.cfg.WriteTimeout))
	_, err := s.conn.Write(buf)
	return err
}

// written returns the buffer of written frames and their bytes to the
// queue's accounting.
func (s *socket) written(frames [][]byte, n int) {
	clear(frames)
	s.qmu.Lock()
	s.queued -= n
	if s.spare == nil && cap(frames) <= 1024 && cap(frames) > 0 {
		s.spare = frames[:0]
	}
	s.qmu.Unlock()
}

// writeFrames appends queued frames to buf as WebSocket text frames,
// several at a time as a JSON array batch (both socketcluster-client 14
// and 20 accept arrays), writing whenever buf passes writeFlushBytes. It
// returns what is left to write.
func (s *socket) writeFrames(buf []byte, frames [][]byte) ([]byte, error) {
	for len(frames) > 0 {
		buf, frames = appendBatch(buf, frames)
		if len(buf) >= writeFlushBytes {
			if err := s.write(buf); err != nil {
				return buf[:0], err
			}
			buf = buf[:0]
		}
	}
	return buf, nil
}

// appendBatch appends the first of frames to buf as one WebSocket text
// frame: alone, or with the frames after it as a JSON array of at most
// maxBatchBytes. It returns the frames not taken.
func appendBatch(buf []byte, frames [][]byte) ([]byte, [][]byte) {
	k, size := 1, len(frames[0])
	for k < len(frames) && size+len(frames[k])+1 <= maxBatchBytes-2 {
		size += len(frames[k]) + 1
		k++
	}
	if k == 1 {
		return ws.AppendFrame(buf, ws.OpText, frames[0]), frames[1:]
	}
	buf = ws.AppendHeader(buf, ws.OpText, size+2)
	buf = append(buf, '[')
	for i := 0; i < k; i++ {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, frames[i]...)
	}
	return append(buf, ']'), frames[k:]
}

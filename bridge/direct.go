package bridge

import (
	"sync"

	"github.com/sockmq/sockmq/internal/ws"
)

// A frame enqueued for a socket that has nothing queued and no writer is
// written at once by the goroutine that enqueues it (a publisher's
// goroutine, for example), with one non-blocking writev: at a steady
// message rate, starting a writer goroutine per message (and waking it,
// and Go's blocking write entering the scheduler's system-call path) cost
// several times what the write itself does. What the kernel does not take
// at once is left to a writer goroutine as before, so the enqueuer never
// waits on the network.

// maxDirectFrames is how many frames one direct write carries (enqueue
// takes a response and an event at most; a larger set is queued).
const maxDirectFrames = 4

// directIO is the scratch of a direct write: the iovecs (frames, and the
// brackets and commas of a JSON-array batch) and the WebSocket frame
// header (server frames have at most 10 header bytes). Pooled, so a
// direct write allocates nothing and an idle socket holds none.
type directIO struct {
	iov [2*maxDirectFrames + 1][]byte
	hdr [11]byte
}

var directIOs = sync.Pool{New: func() any { return new(directIO) }}

// The punctuation of a batch, shared by every direct write (read only).
var (
	batchComma = []byte{','}
	batchClose = []byte{']'}
)

// canWriteDirectLocked reports whether the caller may write frames (n
// bytes) itself: the socket is watched by the poller (its writes are
// non-blocking), nothing else is queued or being written (frame order),
// and the frames fit one batch. The caller holds qmu.
func (s *socket) canWriteDirectLocked(nframes, n int) bool {
	return s.cio != nil && nframes > 0 && nframes <= maxDirectFrames && n+nframes+1 <= maxBatchBytes &&
		!s.writing && !s.connClosed && len(s.queue) == 0 && len(s.partial) == 0 && !s.pongDue && s.pings == 0
}

// writeDirect writes frames (n bytes in all, counted in s.queued) in one
// WebSocket text frame without blocking: one frame alone, several as a
// JSON-array batch, as the writer goroutine would. The caller has set
// s.writing under qmu and released qmu: it is the socket's writer until
// this returns. The rest of a short write (all of it when the kernel took
// nothing, or when the write failed) goes to a writer goroutine, which
// writes it first (and meets the error, if any, and closes the socket).
//
// It never runs cleanup itself: the enqueuer may hold a channel's member
// lock, which cleanup takes. A socket closed meanwhile is cleaned up on a
// goroutine of its own.
func (s *socket) writeDirect(frames [][]byte, n int) {
	d := directIOs.Get().(*directIO)
	k := 0
	if len(frames) == 1 {
		d.iov[0] = ws.AppendHeader(d.hdr[:0], ws.OpText, n)
		d.iov[1] = frames[0]
		k = 2
	} else {
		hdr := ws.AppendHeader(d.hdr[:0], ws.OpText, n+len(frames)+1)
		d.iov[0] = append(hdr, '[')
		k = 1
		for i, f := range frames {
			if i > 0 {
				d.iov[k] = batchComma
				k++
			}
			d.iov[k] = f
			k++
		}
		d.iov[k] = batchClose
		k++
	}
	iov := d.iov[:k]
	total := 0
	for _, b := range iov {
		total += len(b)
	}
	w, err := s.cio.Writev(iov)
	if err != nil {
		w = 0
	}

	s.qmu.Lock()
	rest := len(s.partial)
	if w < total {
		// The rest, in order, before anything queued meanwhile.
		for _, b := range iov {
			if w >= len(b) {
				w -= len(b)
				continue
			}
			s.partial = append(s.partial, b[w:]...)
			w = 0
		}
	}
	clear(d.iov[:])
	directIOs.Put(d)
	s.directDoneLocked(n, len(s.partial)-rest)
}

// directDoneLocked ends a direct write of n queued bytes whose unwritten
// rest (rest bytes) is in s.partial, where it still counts against
// max_queue_bytes until the writer has written it: the writer role passes
// to a writer goroutine if anything is left to write, and a socket closed
// meanwhile is cleaned up on a goroutine of its own. The caller holds qmu;
// it is released.
func (s *socket) directDoneLocked(n, rest int) {
	s.queued += rest - n
	s.partialQueued += rest
	s.writing = false
	if len(s.queue) > 0 || len(s.partial) > 0 || s.pongDue || s.pings != 0 || s.closeReq != nil && !s.closeSent {
		s.startWriterLocked()
	}
	done := s.finishedLocked()
	s.qmu.Unlock()
	if done {
		go s.cleanup()
	}
}

// writeBuffered is writeDirect for more frames than one writev carries:
// they are copied into a pooled buffer as JSON-array batches (as the
// writer goroutine would) and written with one non-blocking write.
func (s *socket) writeBuffered(frames [][]byte, n int) {
	bp := writeBufs.Get().(*[]byte)
	buf := (*bp)[:0]
	for rest := frames; len(rest) > 0; {
		buf, rest = appendBatch(buf, rest)
	}
	w, err := s.cio.Write(buf)
	if err != nil {
		w = 0
	}
	s.qmu.Lock()
	s.partial = append(s.partial, buf[w:]...)
	if cap(buf) <= maxPooledWrite {
		*bp = buf[:0]
		writeBufs.Put(bp)
	}
	s.directDoneLocked(n, len(buf)-w)
}

// FlushBatch writes the frames held for the end of a broker read batch
// (see enqueue) at once, without blocking, up to writeFlushBytes of them;
// more than that, and anything else due meanwhile (pings, a pong, a
// close), goes to a writer goroutine. The socket's writer role, held
// since the frames were queued, passes on. Like writeDirect it never runs
// cleanup itself.
func (s *socket) FlushBatch() {
	s.qmu.Lock()
	frames := s.queue
	n := 0
	for _, f := range frames {
		n += len(f)
	}
	if s.connClosed || len(s.partial) > 0 || s.pongDue || s.pings != 0 || s.closeReq != nil ||
		len(frames) == 0 || n > writeFlushBytes {
		s.writing = false
		s.startWriterLocked()
		done := s.finishedLocked()
		s.qmu.Unlock()
		if done {
			go s.cleanup()
		}
		return
	}
	s.queue, s.spare = s.spare[:0], nil
	s.qmu.Unlock()
	if len(frames) <= maxDirectFrames && n+len(frames)+1 <= maxBatchBytes {
		s.writeDirect(frames, n)
	} else {
		s.writeBuffered(frames, n)
	}
	s.written(frames, 0)
}

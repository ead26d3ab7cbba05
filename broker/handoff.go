package broker

import (
	"net"
	"sync"
)

// handoffs tracks the connections a listener has handed to mochi. Closing
// the listener refuses further handoffs, closes the connections still open
// (those that have not finished CONNECT, which mochi does not know yet),
// and waits until every handoff has returned. mochi's Close waits for its
// clients with a WaitGroup that each connection joins when mochi starts
// handling it; a connection accepted just before shutdown could join while
// Close was already waiting (mochi issue #541: a data race, and possibly a
// connection outliving Close). After closeAll, no handoff is in progress.
type handoffs struct {
	mu     sync.Mutex
	closed bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// begin registers c; it returns false once the listener is closing, and
// the caller then closes c instead of handing it over.
func (h *handoffs) begin(c net.Conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	if h.conns == nil {
		h.conns = make(map[net.Conn]struct{})
	}
	h.conns[c] = struct{}{}
	h.wg.Add(1)
	return true
}

// end reports that mochi is done with c.
func (h *handoffs) end(c net.Conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.wg.Done()
}

// closeAll refuses further handoffs, closes what is still open and waits
// for every handoff to end. Call it after the established clients were
// disconnected (they then end promptly). Safe to call more than once.
func (h *handoffs) closeAll() {
	h.mu.Lock()
	h.closed = true
	open := make([]net.Conn, 0, len(h.conns))
	for c := range h.conns {
		open = append(open, c)
	}
	h.mu.Unlock()
	for _, c := range open {
		_ = c.Close()
	}
	h.wg.Wait()
}

package broker

import (
	"container/list"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sockmq/sockmq/internal/limit"
)

// Limit labels (sockmq_limit_refusals_total{limit=...}) recorded by the
// connection gate and the HTTP listener.
const (
	limitMaxConns      = "max_connections"
	limitPerAddress    = "max_connections_per_address"
	limitIdleReclaimed = "http_idle_reclaimed"
	limitIdleTimeout   = "http_idle_timeout"
	limitReadTimeout   = "http_read_timeout"
)

// gateLimits lists the labels exported with a zero count from the start.
var gateLimits = []string{limitMaxConns, limitPerAddress, limitIdleReclaimed, limitIdleTimeout, limitReadTimeout}

// connGate admits the connections of every listener (MQTT over TCP and
// TLS, and the HTTP listener with its WebSockets) against
// limits.max_connections and limits.max_connections_per_address, counting
// each connection from accept to close. At a cap it first closes the
// oldest idle keep-alive HTTP connection, which HTTP allows a server to do
// at any time; only when there is none is the newcomer refused. It also
// tells the HTTP listener's timeouts apart for the metrics.
type connGate struct {
	max, perAddr int64 // 0: no limit
	limits       *limit.Recorder
	idleTimeout  time.Duration // listeners.http.idle_timeout, for the log
	readTimeout  time.Duration // listeners.http.read_timeout, for the log

	mu    sync.Mutex
	total int64
	addrs map[netip.Prefix]*addrConns // only when perAddr > 0
	idle  list.List                   // *gatedConn: idle keep-alive HTTP connections, oldest first

	refusals refusals
}

// addrConns counts one address's connections.
type addrConns struct {
	n    int64
	idle list.List // *gatedConn, oldest first
}

func newConnGate(max, perAddr int64, limits *limit.Recorder) *connGate {
	limits.Declare(gateLimits...)
	return &connGate{max: max, perAddr: perAddr, limits: limits, addrs: make(map[netip.Prefix]*addrConns)}
}

// admit counts c in and returns it wrapped, or returns the name of the
// limit that refuses it. Making room closes idle HTTP connections.
func (g *connGate) admit(c net.Conn, isHTTP bool) (*gatedConn, string) {
	var key netip.Prefix
	if g.perAddr > 0 {
		key, _ = limit.AddrKey(c.RemoteAddr().String())
	}
	var victims []*gatedConn
	g.mu.Lock()
	if a := g.addrs[key]; g.perAddr > 0 && a != nil && a.n >= g.perAddr {
		v := oldest(&a.idle)
		if v == nil {
			g.mu.Unlock()
			return nil, limitPerAddress
		}
		g.releaseLocked(v)
		victims = append(victims, v)
	}
	if g.max > 0 && g.total >= g.max {
		v := oldest(&g.idle)
		if v == nil {
			g.mu.Unlock()
			g.closeVictims(victims)
			return nil, limitMaxConns
		}
		g.releaseLocked(v)
		victims = append(victims, v)
	}
	g.total++
	if g.perAddr > 0 {
		a := g.addrs[key]
		if a == nil {
			a = &addrConns{}
			g.addrs[key] = a
		}
		a.n++
	}
	g.mu.Unlock()
	g.closeVictims(victims)
	gc := &gatedConn{Conn: c, g: g, key: key, isHTTP: isHTTP}
	return gc, ""
}

func oldest(l *list.List) *gatedConn {
	if e := l.Front(); e != nil {
		return e.Value.(*gatedConn)
	}
	return nil
}

// closeVictims closes idle connections whose slots were given away.
func (g *connGate) closeVictims(victims []*gatedConn) {
	for _, v := range victims {
		_ = v.Conn.Close() // the raw connection: net/http's reader ends, its slot is already free
		g.limits.Hit(limitIdleReclaimed, "closed an idle HTTP keep-alive connection to make room: connection limit reached",
			"remote", v.RemoteAddr().String(), "key", "limits.max_connections", "max_connections", g.max, "max_connections_per_address", g.perAddr)
	}
}

// release gives c's slot back; it is safe to call more than once.
func (g *connGate) release(c *gatedConn) {
	g.mu.Lock()
	g.releaseLocked(c)
	g.mu.Unlock()
}

func (g *connGate) releaseLocked(c *gatedConn) {
	if c.released {
		return
	}
	c.released = true
	g.unidleLocked(c)
	g.total--
	if a := g.addrs[c.key]; a != nil && g.perAddr > 0 {
		if a.n--; a.n <= 0 {
			delete(g.addrs, c.key)
		}
	}
}

// setIdle records whether c, an HTTP connection, waits for its next request.
func (g *connGate) setIdle(c *gatedConn, idle bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.released {
		return
	}
	if !idle {
		g.unidleLocked(c)
		return
	}
	if c.idleEl == nil {
		c.idleEl = g.idle.PushBack(c)
		if a := g.addrs[c.key]; a != nil && g.perAddr > 0 {
			c.addrIdleEl = a.idle.PushBack(c)
		}
	}
}

func (g *connGate) unidleLocked(c *gatedConn) {
	if c.idleEl != nil {
		g.idle.Remove(c.idleEl)
		c.idleEl = nil
	}
	if c.addrIdleEl != nil {
		if a := g.addrs[c.key]; a != nil {
			a.idle.Remove(c.addrIdleEl)
		}
		c.addrIdleEl = nil
	}
}

// httpConnState is the HTTP server's ConnState hook: it keeps the list of
// idle keep-alive connections.
func (g *connGate) httpConnState(c net.Conn, st http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	gc, ok := c.(*gatedConn)
	if !ok {
		return
	}
	gc.state.Store(int32(st))
	switch st {
	case http.StateIdle:
		g.setIdle(gc, true)
	case http.StateActive, http.StateHijacked:
		g.setIdle(gc, false)
	}
}

// timedOut records an HTTP connection whose read deadline passed.
func (g *connGate) timedOut(c *gatedConn) {
	switch http.ConnState(c.state.Load()) {
	case http.StateIdle:
		g.limits.Hit(limitIdleTimeout, "HTTP connection closed: idle for listeners.http.idle_timeout",
			"remote", c.RemoteAddr().String(), "key", "listeners.http.idle_timeout", "idle_timeout", g.idleTimeout)
	case http.StateNew, http.StateActive:
		g.limits.Hit(limitReadTimeout, "HTTP connection closed: request not received within listeners.http.read_timeout",
			"remote", c.RemoteAddr().String(), "key", "listeners.http.read_timeout", "read_timeout", g.readTimeout)
	}
}

// listener wraps ln so that Accept returns admitted connections only;
// refused ones get answer (in their protocol) and are closed.
func (g *connGate) listener(ln net.Listener, isHTTP bool, answer func(net.Conn)) net.Listener {
	return &gatedListener{Listener: ln, g: g, isHTTP: isHTTP, answer: answer}
}

type gatedListener struct {
	net.Listener
	g      *connGate
	isHTTP bool
	answer func(net.Conn)
}

// Accept returns the next admitted connection.
func (l *gatedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		gc, refusedBy := l.g.admit(c, l.isHTTP)
		if gc != nil {
			return gc, nil
		}
		l.g.refuse(c, refusedBy, l.answer)
	}
}

// aLongTimeAgo is the earliest read deadline that can be a real timeout:
// net/http aborts its own pending reads with a deadline in 1970.
var aLongTimeAgo = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// gatedConn is an admitted connection; closing it frees its slot.
type gatedConn struct {
	net.Conn
	g      *connGate
	key    netip.Prefix
	isHTTP bool

	// guarded by g.mu
	released           bool
	idleEl, addrIdleEl *list.Element

	state        atomic.Int32 // HTTP only: the http.ConnState last reported
	readDeadline atomic.Int64 // Unix nanoseconds of the read deadline last set; 0 none
	timedOutAt   atomic.Int64 // the read deadline last recorded as a timeout
}

// Close closes the connection and frees its slot.
func (c *gatedConn) Close() error {
	err := c.Conn.Close()
	c.g.release(c)
	return err
}

// Read reads, and records HTTP read and idle timeouts.
func (c *gatedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil && c.isHTTP && isTimeout(err) {
		// Once per deadline: net/http's readers may retry a read that
		// failed, and see the same expired deadline again.
		if dl := c.readDeadline.Load(); dl > aLongTimeAgo && c.timedOutAt.Swap(dl) != dl {
			c.g.timedOut(c)
		}
	}
	return n, err
}

// SetDeadline sets both deadlines.
func (c *gatedConn) SetDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline.
func (c *gatedConn) SetReadDeadline(t time.Time) error {
	c.noteReadDeadline(t)
	return c.Conn.SetReadDeadline(t)
}

func (c *gatedConn) noteReadDeadline(t time.Time) {
	if t.IsZero() {
		c.readDeadline.Store(0)
		return
	}
	c.readDeadline.Store(t.UnixNano())
}

// fdReserve is how many file descriptors limits.max_connections leaves to
// the rest of the process: refusals being answered, listeners, the store,
// the auth files, standard streams and the poller.
const fdReserve = maxRefusing + 64

// connectionCap returns the connection cap to enforce: the configured one
// (0 = none), lowered to fit nofile, the open-file limit, when known.
// Past that limit accept fails, and a new client could not even be told
// the server is busy.
func connectionCap(configured int64, nofile uint64, known bool) (capped int64, lowered bool) {
	if !known || nofile > 1<<40 { // unknown or unlimited
		return configured, false
	}
	avail := max(int64(nofile)-fdReserve, int64(nofile)/2)
	if configured == 0 || configured > avail {
		return avail, true
	}
	return configured, false
}

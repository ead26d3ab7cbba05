package limit

import (
	"net"
	"net/netip"
	"sync"
	"time"
)

// LoginGuardConfig tunes a [LoginGuard]. Zero fields take the documented
// defaults.
type LoginGuardConfig struct {
	// Free is how many failures an address may have within Window before
	// its failures are slowed down. Zero means 3.
	Free int
	// Base is the delay of the first slowed failure; each further failure
	// doubles it. Zero means 250ms.
	Base time.Duration
	// Max caps the delay. Zero means 5s.
	Max time.Duration
	// Window is how long an address's failures are remembered after its
	// last failure. Zero means 10 minutes.
	Window time.Duration
	// MaxAddresses caps the addresses tracked; past it, half of the
	// entries are forgotten (the oldest first when they have expired).
	// Zero means 100000.
	MaxAddresses int
}

func (c LoginGuardConfig) withDefaults() LoginGuardConfig {
	if c.Free == 0 {
		c.Free = 3
	}
	if c.Base == 0 {
		c.Base = 250 * time.Millisecond
	}
	if c.Max == 0 {
		c.Max = 5 * time.Second
	}
	if c.Window == 0 {
		c.Window = 10 * time.Minute
	}
	if c.MaxAddresses == 0 {
		c.MaxAddresses = 100000
	}
	return c
}

// LoginGuard slows down password guessing. Correct passwords are never
// delayed or refused by it: only the answer to a failed attempt is delayed,
// by a delay that grows with the recent failures of the remote address
// (and, through [LoginGuard.DelayFor], of the connection). A per-user
// lockout is deliberately absent: it would let anyone lock a user out.
//
// Addresses are keyed by IP (IPv6 by its /64 prefix, which one host
// usually owns whole), so changing the source port gains nothing.
type LoginGuard struct {
	cfg LoginGuardConfig
	mu  sync.Mutex
	m   map[netip.Prefix]*addrFailures
}

type addrFailures struct {
	n    int
	last time.Time
}

// NewLoginGuard returns a guard with cfg's settings.
func NewLoginGuard(cfg LoginGuardConfig) *LoginGuard {
	return &LoginGuard{cfg: cfg.withDefaults(), m: make(map[netip.Prefix]*addrFailures)}
}

// AddrKey returns the key remote ("host:port" or a bare IP) is tracked
// under; ok is false when remote is not an IP address (for example a unix
// socket), which is then tracked under one shared key.
func AddrKey(remote string) (key netip.Prefix, ok bool) {
	host := remote
	if h, _, err := net.SplitHostPort(remote); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}, false
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return netip.PrefixFrom(ip, 32), true
	}
	p, _ := ip.Prefix(64)
	return p, true
}

// Failed records a failed login from remote and returns how long the
// failure's answer should be delayed, from the address's failures alone.
func (g *LoginGuard) Failed(remote string, now time.Time) time.Duration {
	key, _ := AddrKey(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.m[key]
	if f == nil {
		if len(g.m) >= g.cfg.MaxAddresses {
			g.evict(now)
		}
		f = &addrFailures{}
		g.m[key] = f
	} else if now.Sub(f.last) > g.cfg.Window {
		f.n = 0
	}
	f.n++
	f.last = now
	return g.DelayFor(f.n)
}

// Failures returns the failures remembered for remote's address.
func (g *LoginGuard) Failures(remote string, now time.Time) int {
	key, _ := AddrKey(remote)
	g.mu.Lock()
	defer g.mu.Unlock()
	if f := g.m[key]; f != nil && now.Sub(f.last) <= g.cfg.Window {
		return f.n
	}
	return 0
}

// DelayFor is the delay for the n-th failure (of an address or of one
// connection): zero for the first Free failures, then Base doubling up to
// Max.
func (g *LoginGuard) DelayFor(n int) time.Duration {
	k := n - g.cfg.Free
	if k <= 0 {
		return 0
	}
	d := g.cfg.Base
	for i := 1; i < k && d < g.cfg.Max; i++ {
		d *= 2
	}
	return min(d, g.cfg.Max)
}

// Tracked returns the number of addresses with remembered failures.
func (g *LoginGuard) Tracked() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.m)
}

// evict forgets expired entries, and half of the rest if that is not
// enough. The caller holds g.mu.
func (g *LoginGuard) evict(now time.Time) {
	for k, f := range g.m {
		if now.Sub(f.last) > g.cfg.Window {
			delete(g.m, k)
		}
	}
	if len(g.m) < g.cfg.MaxAddresses {
		return
	}
	drop := len(g.m) / 2
	for k := range g.m { // random order
		if drop == 0 {
			break
		}
		delete(g.m, k)
		drop--
	}
}

package bridge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/origin"
	"github.com/sockmq/sockmq/internal/poller"
	"github.com/sockmq/sockmq/internal/ws"
)

// Options are the bridge's collaborators.
type Options struct {
	// Broker is the MQTT broker. Required.
	Broker Broker
	// Authorizer authenticates logins and authorizes channels. Nil allows
	// everything to everyone (and accepts any login).
	Authorizer Authorizer
	// Registerer receives the bridge's Prometheus metrics. Nil registers
	// none.
	Registerer prometheus.Registerer
	// DataDir is where the generated token key is kept (bridge-auth.key)
	// when Config.AuthKey is empty. Empty means a random key per process:
	// tokens then do not survive a restart.
	DataDir string
	// Observer, if set, is told when sockets open and close.
	Observer Observer
	// LoginGuard delays the answers to failed logins by the failures of
	// the remote address. sockmq shares one with the MQTT listener. Nil
	// means a guard of the bridge's own with limit's default settings.
	LoginGuard *limit.LoginGuard
	// Revocations keeps the ids of logged-out tokens until they expire.
	// Nil means the bridge's own list: <DataDir>/bridge-revoked-tokens,
	// or memory only without a data directory.
	Revocations Revocations
}

// Handler serves SocketCluster clients over WebSocket and bridges their
// channels to MQTT topics. Mount it with http.Handle on each of
// Config.Paths().
type Handler struct {
	cfg      Config
	log      *slog.Logger
	broker   Broker
	deferrer BatchDeferrer  // nil: the broker has no read batches
	batcher  ReadBatcher    // nil: each publish from a socket is written at once
	async    AsyncPublisher // nil: publishes block the socket's reader until stored
	authz    Authorizer
	observer Observer
	metrics  *metrics
	signer   *signer
	hub      *hub
	guard    *limit.LoginGuard
	limits   *limit.Recorder
	failLog  *limit.LogLimiter // failed logins

	revocations    Revocations
	ownRevocations *revocationList // nil when Options.Revocations was given
	tokens         tokenHolders
	origins        *origin.Policy
	poll           *poller.Group // nil: sockets keep a reader goroutine
	wheel          *wheel
	paths          map[string]bool

	procs atomic.Pointer[map[string]ProcedureFunc]
	pmu   sync.Mutex // serialises RegisterProcedure

	mu       sync.Mutex
	sockets  map[*socket]struct{}
	shutdown bool
	wg       sync.WaitGroup
	done     chan struct{}
	once     sync.Once
}

// New validates cfg, fills its defaults and returns a Handler. It loads or
// creates the token key, opens the revocation list (unless
// opts.Revocations is given), registers metrics on opts.Registerer and a
// reload callback on opts.Authorizer.
func New(cfg Config, opts Options, log *slog.Logger) (*Handler, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if opts.Broker == nil {
		return nil, errors.New("bridge: Options.Broker is required")
	}
	cfg = cfg.withDefaults()
	key, persisted, err := loadAuthKey(cfg.AuthKey, opts.DataDir)
	if err != nil {
		return nil, err
	}
	if !persisted {
		log.Warn("bridge: no auth_key and no data directory: login tokens will not survive a restart")
	}
	h := &Handler{
		cfg: cfg, log: log, broker: opts.Broker, authz: opts.Authorizer, observer: opts.Observer,
		metrics: newMetrics(opts.Registerer),
		signer:  &signer{key: key, ttl: cfg.TokenExpiry},
		guard:   opts.LoginGuard,
		limits: limit.NewRecorder(opts.Registerer, log, "bridge_login_timeout", "bridge_max_failed_logins", "bridge_revoked_tokens", limitOrigins,
			limitSubscribeRate, limitInvokeRate),
		failLog: limit.NewLogLimiter(log),
		tokens:  tokenHolders{m: make(map[string][]*socket)},
		sockets: make(map[*socket]struct{}),
		done:    make(chan struct{}),
		paths:   make(map[string]bool),
	}
	if h.authz == nil {
		h.authz = openAuthorizer{}
	}
	h.deferrer, _ = opts.Broker.(BatchDeferrer)
	h.batcher, _ = opts.Broker.(ReadBatcher)
	h.async, _ = opts.Broker.(AsyncPublisher)
	if h.guard == nil {
		h.guard = limit.NewLoginGuard(limit.LoginGuardConfig{})
	}
	h.revocations = opts.Revocations
	if h.revocations == nil {
		l, err := openRevocationList(opts.DataDir, MaxRevokedTokens, func(n int) {
			h.limits.Hit("bridge_revoked_tokens", "revocation list full: the revocations that expire soonest were forgotten",
				"max_revoked_tokens", MaxRevokedTokens, "forgotten", n)
		})
		if err != nil {
			return nil, err
		}
		h.revocations, h.ownRevocations = l, l
	}
	h.revocations.OnRevoke(h.revoked)
	h.hub = newHub(h)
	for _, p := range cfg.Paths() {
		h.paths[p] = true
	}
	if h.origins, err = origin.Parse(cfg.AllowedOrigins); err != nil {
		return nil, fmt.Errorf("bridge.allowed_origins: %w", err) // Validate has caught it already
	}
	if h.poll, err = poller.New(1, 1); err != nil {
		h.poll = nil
		log.Info("bridge: no epoll poller; each socket keeps a reader goroutine", "error", err)
	}
	h.wheel = newWheel(h)
	empty := map[string]ProcedureFunc{}
	h.procs.Store(&empty)
	h.authz.OnReload(h.reloaded)
	log.Info("socketcluster bridge ready", "path", cfg.Path, "topic_prefix", cfg.TopicPrefix, "protocol_version", cfg.ProtocolVersion)
	return h, nil
}

// Paths returns the URL paths to mount the handler on.
func (h *Handler) Paths() []string { return h.cfg.Paths() }

// RegisterProcedure makes fn answer socket.invoke(name, data) (and handle
// socket.transmit(name, data), ignoring the result). Registering a name
// again replaces its function. It is safe to call at any time. Like
// http.ServeMux.Handle, it panics on programming errors: a nil fn, an empty
// name, a name starting with # (reserved by the protocol) or the built-in
// login and logout.
func (h *Handler) RegisterProcedure(name string, fn ProcedureFunc) {
	if name == "" || strings.HasPrefix(name, "#") || name == procLogin || name == procLogout {
		panic(fmt.Sprintf("bridge: procedure name %q is reserved", name))
	}
	if fn == nil {
		panic(fmt.Sprintf("bridge: procedure %q: nil function", name))
	}
	h.pmu.Lock()
	defer h.pmu.Unlock()
	old := *h.procs.Load()
	next := make(map[string]ProcedureFunc, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[name] = fn
	h.procs.Store(&next)
}

func (h *Handler) procedure(name string) ProcedureFunc { return (*h.procs.Load())[name] }

// limitOrigins is the limit label of sockets refused for their Origin
// (sockmq_limit_refusals_total{limit="allowed_origins"}, shared with MQTT
// over WebSocket).
const limitOrigins = "allowed_origins"

// checkOrigin applies Config.AllowedOrigins: a page from another origin
// than the listener's own and the listed ones is refused (403), counted
// and logged without flooding the log. Requests without Origin
// (non-browser clients) are accepted: the header only protects browsers.
func (h *Handler) checkOrigin(r *http.Request) bool {
	if h.origins.Allowed(r) {
		return true
	}
	h.metrics.handshakesRefused.WithLabelValues("origin").Inc()
	h.limits.Hit(limitOrigins, "socket refused: the page's origin is not allowed",
		"origin", r.Header.Get("Origin"), "remote", r.RemoteAddr, "key", "listeners.http.allowed_origins")
	return false
}

// ServeHTTP upgrades the request to a WebSocket and hands the socket to
// the poller (see the package documentation); it returns once the
// socket's first input, if any, is handled, while the socket lives on.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.paths[r.URL.Path] {
		http.NotFound(w, r)
		return
	}
	h.mu.Lock()
	if h.shutdown {
		h.mu.Unlock()
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	h.wg.Add(1) // done when the socket is cleaned up
	h.mu.Unlock()

	conn, early, err := ws.Upgrade(w, r, ws.UpgradeOptions{CheckOrigin: h.checkOrigin, WriteTimeout: h.cfg.WriteTimeout})
	if err != nil {
		h.wg.Done()
		return // Upgrade has answered
	}
	s := newSocket(h, conn, r.RemoteAddr)
	if !h.track(s) {
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(ws.AppendClose(nil, CloseGoingAway, "server shutting down"))
		_ = conn.Close()
		h.wg.Done()
		return
	}
	s.start(early)
}

// start serves the socket from now on without the HTTP handler's
// goroutine (which returns, releasing net/http's state): from the poller
// when the connection has a descriptor it can watch, else from a reader
// goroutine of the socket's own (TLS). The bytes that came with the
// upgrade, and whatever has arrived since, are handled at once.
func (s *socket) start(early []byte) {
	h := s.h
	var (
		cio   *poller.ConnIO
		watch *poller.Watch
	)
	if h.poll != nil {
		if c, err := poller.WrapConn(s.conn); err == nil {
			if w, err := h.poll.Add(c.Fd(), s.onReadable); err == nil {
				cio, watch = c, w
			}
		}
	}
	// The socket is tracked already: Shutdown may have closed it
	// meanwhile. Then no reader starts (closeConn, or the writer that
	// ended last, has run cleanup) and the watch goes at once.
	s.qmu.Lock()
	if s.connClosed {
		s.qmu.Unlock()
		if watch != nil {
			watch.Close()
		}
		return
	}
	s.cio, s.watch = cio, watch
	s.reading = true
	s.qmu.Unlock()
	h.wheel.schedule(s, s.connectedAt.Add(h.cfg.HandshakeTimeout))
	if watch != nil {
		s.readBurst(early)
		return
	}
	go s.readBlocking(early)
}

func (h *Handler) track(s *socket) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.shutdown {
		return false
	}
	h.sockets[s] = struct{}{}
	return true
}

func (h *Handler) untrack(s *socket) {
	h.mu.Lock()
	delete(h.sockets, s)
	h.mu.Unlock()
}

func (h *Handler) snapshot() []*socket {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]*socket, 0, len(h.sockets))
	for s := range h.sockets {
		out = append(out, s)
	}
	return out
}

// reloaded runs after the Authorizer's rules change.
func (h *Handler) reloaded() {
	for _, s := range h.snapshot() {
		s.reloaded()
	}
}

// Shutdown closes every socket with 1001 (going away: clients reconnect
// after their back-off), refuses new ones, and waits until every socket
// goroutine has ended or ctx is done (then it returns ctx.Err()). It may
// be called more than once.
func (h *Handler) Shutdown(ctx context.Context) error {
	h.once.Do(func() {
		h.mu.Lock()
		h.shutdown = true
		h.mu.Unlock()
		for _, s := range h.snapshot() {
			s.close(CloseGoingAway, "server shutting down", false)
		}
		go func() {
			h.wg.Wait()
			if h.ownRevocations != nil {
				_ = h.ownRevocations.Close()
			}
			h.hub.close()
			h.wheel.close()
			if h.poll != nil {
				h.poll.Close()
			}
			close(h.done)
		}()
	})
	select {
	case <-h.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Sockets returns the number of open sockets (handshake completed or not).
func (h *Handler) Sockets() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sockets)
}

// BrokerSubscriptions returns the number of distinct MQTT filters the
// bridge is subscribed to.
func (h *Handler) BrokerSubscriptions() int { return h.hub.size() }

package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/origin"
	"github.com/sockmq/sockmq/internal/store"
)

// Listener ids (also the `listener` log key).
const (
	listenerMQTT    = "mqtt"
	listenerMQTTTLS = "mqtt-tls"
	listenerWS      = "mqtt-ws"
)

// Server is sockmq's MQTT broker.
type Server struct {
	cfg     Config
	log     *slog.Logger
	auth    Authorizer
	store   *store.Store // nil when persistence is off
	metrics *metrics
	limits  *limit.Recorder
	authLog *limit.LogLimiter // rate-limits the log line of failed logins
	origins *origin.Policy
	gate    *connGate

	loginGuard atomic.Pointer[limit.LoginGuard]

	sessions sessionTable
	subs     subIndex
	retained retainedStore
	clock    *clock
	throttle *throttle
	trim     memTrimmer     // used by the clock's goroutine only
	trimming atomic.Bool    // a trim's goroutine is running
	trimWG   sync.WaitGroup // the trim's goroutine
	willWG   sync.WaitGroup // wills the clock found due on a cluster node (lifecycle.go)
	// backplane joins a cluster (nil: a single node); set before Start.
	backplane   Backplane
	healthParts []healthPart

	mux     *http.ServeMux
	httpSrv *http.Server
	httpLn  net.Listener
	ws      *wsListener
	tcp     *tcpListener
	tls     *tcpListener
	// flush coalesces the writes of polled connections (and of in-process
	// subscribers that ask, DeferFlush) per read batch.
	flush flusher

	listenersMu sync.Mutex
	listeners   []func(SessionEvent)
	conns       connSet
	nextConn    atomic.Uint64
	connWG      sync.WaitGroup // reader goroutines
	writers     sync.WaitGroup // writer goroutines
	inprocIDs   atomic.Uint64

	running      atomic.Bool
	shutdownOnce sync.Once
	stopped      chan struct{}
	restored     *store.Snapshot
	cluster      *clusterState // nil without a cluster (cluster_session.go)
	// restoredExpiry lists restored queued messages that expire, for Start.
	restoredExpiry []queuedExpiry
}

// New builds a broker from cfg. It opens (and, if needed, migrates) the
// store and restores retained messages and persistent sessions, but binds
// nothing; call Start to listen. auth may be nil, which allows every
// client everything (sockmq's loopback-only default without a password
// file). reg may be nil, in which case metrics go to a private registry
// served on /metrics.
func New(cfg Config, auth Authorizer, reg *prometheus.Registry, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	s := &Server{
		cfg: cfg, log: log, auth: auth,
		mux:     http.NewServeMux(),
		stopped: make(chan struct{}),
	}
	s.sessions.m = make(map[string]*session)
	s.clock = newClock(s)
	s.throttle = newThrottle(s, cfg.Limits.ThrottleQueued)
	s.metrics = newMetrics(reg, s)
	s.limits = limit.NewRecorder(reg, log.With("component", "mqtt"), limitOrigins, limitMaxQueued, limitMaxInflight,
		limitMaxSubscriptions, limitMaxSubscriptionsTotal, limitSubscribeRate, limitLoginDelay, limitClientIDOwner, limitThrottle)
	s.authLog = limit.NewLogLimiter(log.With("component", "mqtt"))
	s.loginGuard.Store(limit.NewLoginGuard(limit.LoginGuardConfig{}))
	s.gate = newConnGate(cfg.Limits.MaxConnections, cfg.Limits.MaxConnectionsPerAddress, s.limits)
	s.gate.idleTimeout, s.gate.readTimeout = cfg.Listeners.HTTP.IdleTimeout, cfg.Listeners.HTTP.ReadTimeout
	nofile, known := openFileLimit()
	if capped, lowered := connectionCap(cfg.Limits.MaxConnections, nofile, known); lowered {
		s.gate.max = capped
		log.Warn("limits.max_connections lowered to fit the open-file limit (RLIMIT_NOFILE); raise the limit (ulimit -n, LimitNOFILE=) to allow more",
			"max_connections", cfg.Limits.MaxConnections, "effective", capped, "open_file_limit", nofile)
	}
	origins, err := origin.Parse(cfg.Listeners.HTTP.AllowedOrigins)
	if err != nil {
		return nil, fmt.Errorf("listeners.http.allowed_origins: %w", err) // Validate has caught it already
	}
	s.origins = origins
	if cfg.Persistence.Enabled {
		st, err := store.Open(store.Options{
			Dir: cfg.Persistence.DataDir, Sync: cfg.Persistence.Sync, Log: log.With("component", "store"),
			OnCommit: s.metrics.observeCommit,
		})
		if err != nil {
			return nil, err
		}
		s.store = st
		snap, err := st.Load()
		if err != nil {
			_ = st.Close()
			return nil, err
		}
		s.restore(snap)
	}
	s.registerRevocation()
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.Handle("GET /metrics", s.metrics.handler(reg))
	return s, nil
}

// Handle mounts an extra HTTP handler on the HTTP listener (the bridge uses
// it). Call it before Start.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// Logger returns the broker's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.running.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if s.store != nil {
		if ok, why := s.store.Healthy(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = fmt.Fprintf(w, `{"status":"store failing","error":%q,"clients":%d}`+"\n", why, s.metrics.clients.Load())
			return
		}
	}
	if len(s.healthParts) > 0 {
		s.writeHealthParts(w)
		return
	}
	_, _ = fmt.Fprintf(w, `{"status":"ok","clients":%d}`+"\n", s.metrics.clients.Load())
}

// committed is the store's committed batch (everything, without a store).
func (s *Server) committed() uint64 {
	if s.store == nil {
		return ^uint64(0)
	}
	return s.store.Committed()
}

func loadTLS(certFile, keyFile string) (*tls.Config, error) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("load certificate %s / %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

// Start binds every configured listener and starts serving. On error
// nothing is left listening.
func (s *Server) Start() (err error) {
	l := s.cfg.Listeners
	defer func() {
		if err != nil {
			s.closeListeners()
			s.tcp.closePoller()
		}
	}()
	if l.MQTT.Address != "" {
		if s.tcp, err = listenTCP(s, listenerMQTT, l.MQTT.Address, nil); err != nil {
			return fmt.Errorf("listeners.mqtt: %w", err)
		}
	}
	if l.MQTTTLS.Address != "" {
		tc, err := loadTLS(l.MQTTTLS.CertFile, l.MQTTTLS.KeyFile)
		if err != nil {
			return fmt.Errorf("listeners.mqtt_tls: %w", err)
		}
		if s.tls, err = listenTCP(s, listenerMQTTTLS, l.MQTTTLS.Address, tc); err != nil {
			return fmt.Errorf("listeners.mqtt_tls: %w", err)
		}
	}
	if l.HTTP.Address != "" {
		s.ws = newWSListener(s, listenerWS)
		s.mux.Handle(l.HTTP.MQTTPath, s.ws)
		var tc *tls.Config
		if l.HTTP.CertFile != "" {
			if tc, err = loadTLS(l.HTTP.CertFile, l.HTTP.KeyFile); err != nil {
				return fmt.Errorf("listeners.http: %w", err)
			}
		}
		ln, err := net.Listen("tcp", l.HTTP.Address)
		if err != nil {
			return fmt.Errorf("listeners.http: listen %s: %w", l.HTTP.Address, err)
		}
		s.httpLn = s.gate.listener(ln, true, answerHTTPBusy(tc))
		if tc != nil {
			s.httpLn = tls.NewListener(s.httpLn, tc)
		}
		// The timeouts end with the upgrade of a WebSocket: net/http clears
		// the deadlines of a hijacked connection, and MQTT keepalive and
		// bridge pings set their own.
		s.httpSrv = &http.Server{
			Handler:           s.mux,
			ReadHeaderTimeout: l.HTTP.ReadTimeout,
			ReadTimeout:       l.HTTP.ReadTimeout,
			IdleTimeout:       l.HTTP.IdleTimeout,
			ConnState:         s.gate.httpConnState,
			ErrorLog:          slog.NewLogLogger(s.log.With("component", "http").Handler(), slog.LevelDebug),
		}
	}
	s.running.Store(true)
	s.clock.start()
	s.resumeRestored()
	s.catchUp()
	s.clock.startSys(time.Now())
	s.clock.startTrim()
	for _, tl := range []*tcpListener{s.tcp, s.tls} {
		if tl != nil {
			go tl.serve()
		}
	}
	if s.httpSrv != nil {
		go func() {
			err := s.httpSrv.Serve(s.httpLn)
			// Shutdown closes the listener itself (before the server's
			// own Shutdown): that end is not an error.
			if err != nil && !errors.Is(err, http.ErrServerClosed) && (s.running.Load() || !errors.Is(err, net.ErrClosed)) {
				s.log.Error("http listener stopped", "error", err)
			}
		}()
	}
	s.log.Info("sockmq broker started", "mqtt", s.MQTTAddr(), "mqtt_tls", s.TLSAddr(), "http", s.HTTPAddr())
	return nil
}

func (s *Server) closeListeners() {
	if s.httpLn != nil {
		_ = s.httpLn.Close()
	}
	for _, l := range []*tcpListener{s.tcp, s.tls} {
		if l != nil {
			l.close()
		}
	}
}

// MQTTAddr is the bound address of the MQTT TCP listener, or "".
func (s *Server) MQTTAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.addr()
}

// TLSAddr is the bound address of the MQTT TLS listener, or "".
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.addr()
}

// HTTPAddr is the bound address of the HTTP listener, or "".
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Shutdown stops accepting connections, disconnects every client (MQTT 5
// clients get DISCONNECT 0x8B "server shutting down"), lets their wills and
// session events run, stops the timers and commits and closes the store.
// It returns ctx.Err() if that takes longer than ctx allows (the work goes
// on in the background). Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.running.Store(false)
		go func() {
			defer close(s.stopped)
			s.closeListeners()
			if s.httpSrv != nil {
				hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = s.httpSrv.Shutdown(hctx)
				cancel()
			}
			if s.ws != nil {
				s.ws.close()
			}
			for _, c := range s.conns.all() {
				c.disconnect(&endCause{err: errShutdown, reason: ReasonShutdown, code: 0x8B})
			}
			s.gate.closeRefusals()
			s.connWG.Wait()
			s.tcp.closePoller()
			s.writers.Wait()
			s.clock.close()
			s.trimWG.Wait() // the store must outlive a trim
			s.willWG.Wait() // and the wills the clock handed off
			if s.store != nil {
				if err := s.store.Close(); err != nil {
					s.log.Error("closing the store", "error", err)
				}
			}
			s.log.Info("sockmq broker stopped")
		}()
	})
	select {
	case <-s.stopped:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// refusedBusy counts a connection refused at accept with CONNACK "server
// busy" (a connection limit).
func (s *Server) refusedBusy() { s.metrics.refused("server_busy") }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

var (
	errShutdown       = errors.New("server shutting down")
	errConnectTimeout = errors.New("no CONNECT within limits.connect_timeout")
	errKeepalive      = errors.New("keepalive expired")
)

// connSet tracks live connections (for shutdown).
type connSet struct {
	mu     sync.Mutex
	m      map[*conn]struct{}
	closed bool
}

// add tracks c and counts it in wg, unless the set is closed (shutdown):
// counting under the set's lock means every Add happens before the
// shutdown's Wait, which starts after all() closed the set.
func (cs *connSet) add(c *conn, wg *sync.WaitGroup) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.closed {
		return false
	}
	wg.Add(1)
	if cs.m == nil {
		cs.m = make(map[*conn]struct{})
	}
	cs.m[c] = struct{}{}
	return true
}

func (cs *connSet) remove(c *conn) {
	cs.mu.Lock()
	delete(cs.m, c)
	cs.mu.Unlock()
}

// all returns the live connections and refuses new ones from then on.
func (cs *connSet) all() []*conn {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.closed = true
	out := make([]*conn, 0, len(cs.m))
	for c := range cs.m {
		out = append(out, c)
	}
	return out
}

// serveConn runs a new network connection; it returns when the connection
// has ended and been cleaned up.
func (s *Server) serveConn(nc net.Conn, listener string) {
	c := newConn(s, nc, listener)
	c.number = s.nextConn.Add(1)
	if !s.conns.add(c, &s.connWG) {
		_ = nc.Close()
		return
	}
	defer s.connWG.Done()
	defer s.conns.remove(c)
	c.serve()
}

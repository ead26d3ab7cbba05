package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/origin"
)

// Listener ids as mochi sees them (also the `listener` log key).
const (
	listenerMQTT    = "mqtt"
	listenerMQTTTLS = "mqtt-tls"
	listenerWS      = "mqtt-ws"
)

// internalClientID is the client id of the broker's own publisher. It starts
// with the reserved prefix, so no network client can take it over.
const internalClientID = ReservedClientIDPrefix + "internal"

// Server is sockmq's MQTT broker.
type Server struct {
	cfg  Config
	log  *slog.Logger
	mq   *mqtt.Server
	auth Authorizer

	internal *mqtt.Client
	subIDs   atomic.Int64
	store    *storeHook
	metrics  *metrics
	limits   *limit.Recorder
	origins  *origin.Policy
	gate     *connGate

	mux      *http.ServeMux
	httpSrv  *http.Server
	httpLn   net.Listener
	ws       *wsListener
	tcp, tls *tcpListener

	sessions  sessionTracker
	takeovers clientSet
	wills     pendingWills

	pidSwaps   packetIDSwaps
	subs       subState
	retained   retainedIndex
	authLog    *limit.Recorder // rate-limits the log line of failed logins
	loginGuard atomic.Pointer[limit.LoginGuard]
	claims     idClaims
	quit       chan struct{} // closed when Shutdown starts
	willGuard  willGuard
	policy     *policyHook
	expiry     *expirer
	expiryDone chan struct{}

	running      atomic.Bool
	shutdownOnce sync.Once
	shutdownErr  error
	stopped      chan struct{}
}

// New builds a broker from cfg. It opens the store but binds nothing; call
// Start to listen. auth may be nil, which allows every client everything
// (the loopback-only default of sockmq without a password file). reg may be
// nil, in which case metrics go to a private registry served on /metrics.
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
	caps := mqtt.NewDefaultServerCapabilities()
	// limits.max_connections is enforced at accept, for every listener
	// (see connGate); mochi's own count of MQTT clients is not needed.
	caps.MaximumClients = math.MaxInt64
	caps.MaximumPacketSize = cfg.Limits.MaxPacketSize
	caps.MaximumClientWritesPending = cfg.Limits.MaxQueuedMessages
	caps.MaximumInflight = cfg.Limits.MaxInflight
	caps.MaximumMessageExpiryInterval = int64(cfg.Limits.MaxMessageExpiry / time.Second)
	// mochi copies a PUBLISH's properties into its PUBACK/PUBREC and then
	// writes the granted QoS (0x01) as reason code, which is not a valid
	// PUBACK reason: MQTT.js rejects the ack and the publish never completes.
	// Acks without inherited properties encode as plain success.
	caps.Compatibilities.NoInheritedPropertiesOnAck = true
	if cfg.Limits.MaxSessionExpiry > 0 {
		caps.MaximumSessionExpiryInterval = uint32(cfg.Limits.MaxSessionExpiry / time.Second)
	}

	mq := mqtt.New(&mqtt.Options{
		Capabilities:           caps,
		Logger:                 slog.New(quietHandler{log.With("component", "mqtt").Handler()}),
		SysTopicResendInterval: 10,
		InlineClient:           true, // Server.Subscribe (the bridge's fan-out) needs it
	})
	s := &Server{
		cfg: cfg, log: log, mq: mq, auth: auth,
		mux:        http.NewServeMux(),
		stopped:    make(chan struct{}),
		quit:       make(chan struct{}),
		expiry:     &expirer{maxExpiry: int64(cfg.Limits.MaxMessageExpiry / time.Second)},
		expiryDone: make(chan struct{}),
	}
	s.internal = mq.NewClient(nil, mqtt.LocalListener, internalClientID, true)
	s.internal.Properties.ProtocolVersion = 5
	s.metrics = newMetrics(reg, mq)
	s.limits = limit.NewRecorder(reg, log.With("component", "mqtt"), limitOrigins,
		limitMaxSubscriptions, limitMaxSubscriptionsTotal, limitSubscribeRate, limitLoginDelay, limitClientIDOwner)
	s.authLog = limit.NewRecorder(nil, log.With("component", "mqtt"))
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

	s.policy = &policyHook{s: s}
	if err := mq.AddHook(s.policy, nil); err != nil {
		return nil, fmt.Errorf("add policy hook: %w", err)
	}
	if cfg.Persistence.Enabled {
		st, err := openStore(cfg.Persistence.DataDir, cfg.Persistence.Sync, log.With("component", "store"))
		if err != nil {
			return nil, err
		}
		s.store = st
		if err := mq.AddHook(st, nil); err != nil {
			_ = st.Stop()
			return nil, fmt.Errorf("add store hook: %w", err)
		}
	}
	s.registerRevocation()
	s.mux.HandleFunc("GET /healthz", s.handleHealth)
	s.mux.Handle("GET /metrics", s.metrics.handler(reg))
	return s, nil
}

// Handle mounts an extra HTTP handler on the HTTP listener (the bridge uses
// it). Call it before Start.
func (s *Server) Handle(pattern string, h http.Handler) { s.mux.Handle(pattern, h) }

// MQTT returns the underlying mochi server for packages in this module that
// need hooks (lwt, presence). Do not call Close on it; use Shutdown.
func (s *Server) MQTT() *mqtt.Server { return s.mq }

// Logger returns the broker's logger.
func (s *Server) Logger() *slog.Logger { return s.log }

func (s *Server) handleHealth(w http.ResponseWriter, _ *http.Request) {
	if !s.running.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = fmt.Fprintf(w, `{"status":"ok","clients":%d}`+"\n", atomic.LoadInt64(&s.mq.Info.ClientsConnected))
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
		}
	}()
	if l.MQTT.Address != "" {
		s.tcp = newTCPListener(listenerMQTT, l.MQTT.Address, nil, s.cfg.Limits.ConnectTimeout, s.gate, s.refusedBusy, s.connectionEnded, s.closeClientsOf)
		if err := s.mq.AddListener(s.tcp); err != nil {
			return fmt.Errorf("listeners.mqtt: %w", err)
		}
	}
	if l.MQTTTLS.Address != "" {
		tc, err := loadTLS(l.MQTTTLS.CertFile, l.MQTTTLS.KeyFile)
		if err != nil {
			return fmt.Errorf("listeners.mqtt_tls: %w", err)
		}
		s.tls = newTCPListener(listenerMQTTTLS, l.MQTTTLS.Address, tc, s.cfg.Limits.ConnectTimeout, s.gate, s.refusedBusy, s.connectionEnded, s.closeClientsOf)
		if err := s.mq.AddListener(s.tls); err != nil {
			return fmt.Errorf("listeners.mqtt_tls: %w", err)
		}
	}
	if l.HTTP.Address != "" {
		s.ws = newWSListener(listenerWS, l.HTTP.MQTTPath, s.cfg.Limits.ConnectTimeout, s.cfg.Limits.MaxPacketSize, s.checkOrigin, s.connectionEnded, s.closeClientsOf)
		if err := s.mq.AddListener(s.ws); err != nil {
			return fmt.Errorf("listeners.http: %w", err)
		}
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
			ErrorLog:          slog.NewLogLogger(quietHandler{s.log.With("component", "http").Handler()}, slog.LevelDebug),
		}
	}
	if err := s.mq.Serve(); err != nil {
		return fmt.Errorf("start mqtt: %w", err)
	}
	s.running.Store(true)
	s.seedRetained()
	s.resumeWills()
	if err := stopMochiExpiryScans(s.mq); err != nil {
		s.log.Warn("keeping mochi's own expiry scans", "error", err)
	} else {
		s.seedExpiry()
		go s.runExpiry(s.expiryDone)
	}
	if s.httpSrv != nil {
		go func() {
			if err := s.httpSrv.Serve(s.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("http listener stopped", "error", err)
			}
		}()
	}
	s.log.Info("sockmq broker started", "mqtt", s.MQTTAddr(), "mqtt_tls", s.TLSAddr(), "http", s.HTTPAddr())
	return nil
}

// refusedBusy counts a connection refused at accept with CONNACK "server
// busy" among the refused connections.
func (s *Server) refusedBusy() { s.metrics.refused("server_busy") }

func (s *Server) closeListeners() {
	if s.httpLn != nil {
		_ = s.httpLn.Close()
	}
	for _, l := range []*tcpListener{s.tcp, s.tls} {
		if l != nil {
			l.Close(func(string) {})
		}
	}
}

// MQTTAddr is the bound address of the MQTT TCP listener, or "".
func (s *Server) MQTTAddr() string {
	if s.tcp == nil {
		return ""
	}
	return s.tcp.Address()
}

// TLSAddr is the bound address of the MQTT TLS listener, or "".
func (s *Server) TLSAddr() string {
	if s.tls == nil {
		return ""
	}
	return s.tls.Address()
}

// HTTPAddr is the bound address of the HTTP listener, or "".
func (s *Server) HTTPAddr() string {
	if s.httpLn == nil {
		return ""
	}
	return s.httpLn.Addr().String()
}

// Shutdown stops accepting connections, disconnects every client with the
// MQTT 5 "server shutting down" reason, flushes and closes the store. It
// returns ctx.Err() if that takes longer than ctx allows (the work goes on
// in the background). Safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() {
		s.running.Store(false)
		close(s.quit)
		s.wills.stopAll()
		close(s.expiryDone)
		go func() {
			defer close(s.stopped)
			if s.httpSrv != nil {
				hctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_ = s.httpSrv.Shutdown(hctx)
				cancel()
			}
			// Close disconnects clients (0x8B), waits for their goroutines,
			// then stops hooks: the store flushes and closes last.
			_ = s.mq.Close()
			s.gate.closeRefusals()
			s.log.Info("sockmq broker stopped")
		}()
	})
	select {
	case <-s.stopped:
		return s.shutdownErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

// closeClientsOf disconnects every live client of a listener with MQTT 5
// reason 0x8B (server shutting down). It replaces mochi's
// closeListenerClients, whose Clients.GetByListener takes the clients'
// read lock twice: with a client disconnecting at the same moment (waiting
// for the write lock in between) it deadlocks, and shutdown hangs forever.
// Clients.GetAll takes the lock once.
func (s *Server) closeClientsOf(listenerID string) {
	for _, cl := range s.mq.Clients.GetAll() {
		if cl.Net.Listener == listenerID && !cl.Closed() {
			_ = s.mq.DisconnectClient(cl, packets.ErrServerShuttingDown)
		}
	}
}

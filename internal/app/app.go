package app

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/cluster/control"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/lwt"
	"github.com/sockmq/sockmq/presence"
)

// App is a wired sockmq process.
type App struct {
	Log      *slog.Logger
	Auth     *auth.Service
	Broker   *broker.Server
	Bridge   *bridge.Handler // nil when the bridge is disabled
	Presence *presence.Tracker
	Wills    *lwt.Registry // nil when the bridge is disabled
	Metrics  *prometheus.Registry
	// Cluster and Backplane are this node's cluster membership and data
	// plane; nil without a cluster: section.
	Cluster   *cluster.Node
	Backplane *cluster.Backplane
	// Control is the cluster-wide control state (client ids, wills,
	// presence of dead nodes, token revocations); nil on a single node.
	Control *control.Controller

	cancel       context.CancelFunc
	shutdownOnce sync.Once
	shutdownErr  error
}

// New builds every component from cfg. Nothing listens until Start.
func New(cfg config.File, log *slog.Logger) (*App, error) { return newApp(cfg, log, nil) }

// newApp is New, with the cluster's control state when cd is not nil.
func newApp(cfg config.File, log *slog.Logger, cd *controlDeps) (*App, error) {
	if log == nil {
		log = slog.Default()
	}
	if len(cfg.Bridge.AllowedOrigins) > 0 {
		log.Warn("bridge.allowed_origins is deprecated: move its origins to listeners.http.allowed_origins (both keys apply to /mqtt and the bridge alike)",
			"origins", cfg.Bridge.AllowedOrigins)
	}
	authSvc, err := auth.New(cfg.Auth, log)
	if err != nil {
		return nil, err
	}
	a := &App{Log: log, Auth: authSvc, Metrics: prometheus.NewRegistry()}
	a.Broker, err = broker.New(cfg.Broker(), authSvc, a.Metrics, log)
	if err != nil {
		return nil, err
	}
	if err := a.joinCluster(cfg); err != nil {
		_ = a.Broker.Shutdown(context.Background())
		return nil, err
	}
	if cd == nil && a.Cluster != nil {
		cc := a.Cluster.Config()
		cd = &controlDeps{JetStream: a.Cluster.JetStream(), Cluster: a.Cluster.ClusterName(), Node: a.Cluster.NodeName(),
			Replicas: cc.Replicas, NodeTTL: cc.NodeTTL}
	}
	var pub presence.Publisher = presencePublisher{a.Broker}
	node := ""
	if cd != nil {
		if a.Control, err = a.newControl(cfg, *cd); err != nil {
			_ = a.Broker.Shutdown(context.Background())
			_ = a.leaveCluster(context.Background())
			return nil, err
		}
		pub, node = mirroredPresence{presencePublisher{a.Broker}, a.Control}, cd.Node
	}
	a.Presence = wirePresence(a.Broker, pub, node, log)
	if err := a.newBridge(cfg); err != nil {
		_ = a.Broker.Shutdown(context.Background())
		a.Presence.Close()
		return nil, err
	}
	return a, nil
}

// newBridge builds the SocketCluster bridge with its presence, last-will
// and session procedures, mounted on the broker's HTTP listener.
func (a *App) newBridge(cfg config.File) error {
	if !cfg.Bridge.Enabled {
		return nil
	}
	if cfg.Listeners.HTTP.Address == "" {
		a.Log.Warn("bridge.enabled is true but listeners.http.address is empty: the SocketCluster bridge is not served")
		return nil
	}
	bcfg := cfg.Bridge
	bcfg.AllowedOrigins = cfg.AllowedOrigins()
	authz := authAdapter{a.Auth}
	obs := &socketObserver{presence: a.Presence}
	var revocations bridge.Revocations
	if a.Control != nil {
		revocations = a.Control.Revocations() // shared by every node
	}
	opts := bridge.Options{
		Broker:     brokerAdapter{a.Broker},
		Authorizer: authz,
		Registerer: a.Metrics,
		DataDir:    cfg.Persistence.DataDir,
		Observer:   obs,
		LoginGuard: a.Broker.LoginGuard(), // one guard: failures over MQTT and the bridge add up per address
	}
	opts.Revocations = revocations
	br, err := bridge.New(bcfg, opts, a.Log.With("component", "bridge"))
	if err != nil {
		return err
	}
	a.Wills = lwt.New(cfg.LWT, willEncoder{br}, willAuth{a.Auth}, willPublisher{a.Broker}, limit.NewRecorder(a.Metrics, a.Log), a.Log)
	if a.Control != nil {
		a.Wills.SetStore(bridgeWillStore{a.Control}) // wills outlive this node
	}
	obs.wills = a.Wills // set before Start: no socket exists yet
	var remote func() []presence.Doc
	if a.Control != nil {
		remote = a.Control.RemotePresence // every node's sessions
	}
	registerProcedures(br, a.Presence, a.Wills, authz, remote)
	for _, p := range br.Paths() {
		a.Broker.Handle(p, br)
	}
	a.Bridge = br
	return nil
}

// Start opens the listeners and starts watching the auth files.
func (a *App) Start() error {
	if err := a.Broker.Start(); err != nil {
		_ = a.Shutdown(context.Background())
		return err
	}
	if a.Control != nil {
		if err := a.Control.Start(); err != nil {
			_ = a.Shutdown(context.Background())
			return err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	go a.Auth.Watch(ctx, time.Second)
	return nil
}

// Reload re-reads the password and ACL files (SIGHUP).
func (a *App) Reload() error { return a.Auth.Reload() }

// Shutdown stops everything in order: bridge sockets first (close code
// 1001, clients reconnect after back-off), then the broker (MQTT clients
// get DISCONNECT 0x8B, the store is flushed), then presence and wills.
func (a *App) Shutdown(ctx context.Context) error {
	a.shutdownOnce.Do(func() {
		if a.cancel != nil {
			a.cancel()
		}
		var errs []error
		if a.Bridge != nil {
			errs = append(errs, a.Bridge.Shutdown(ctx))
		}
		errs = append(errs, a.Broker.Shutdown(ctx))
		if a.Control != nil {
			errs = append(errs, a.Control.Shutdown(ctx))
		}
		errs = append(errs, a.leaveCluster(ctx))
		a.Presence.Close()
		if a.Wills != nil {
			a.Wills.Close()
		}
		a.shutdownErr = errors.Join(errs...)
	})
	return a.shutdownErr
}

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/presence"
)

// shutdownTimeout bounds a graceful shutdown; a second signal skips it.
const shutdownTimeout = 15 * time.Second

func configFlag(fs *flag.FlagSet) *string {
	p := fs.String("c", "", "path to config.yaml (default: embedded defaults)")
	fs.StringVar(p, "config", "", "same as -c")
	return p
}

func loadConfig(path string) (config.File, error) {
	if path == "" {
		f := config.Default()
		return f, f.Validate()
	}
	return config.Load(path)
}

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sockmq check -c config.yaml\n\nValidates the configuration and exits: 0 when valid, 1 listing every problem.\n\n")
		fs.PrintDefaults()
	}
	path := configFlag(fs)
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	}
	if *path == "" {
		fs.Usage()
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		fmt.Fprintf(stderr, "%s\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", *path)
	return 0
}

func flagExit(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	return 2
}

func newLogger(l config.Logging, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(l.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sockmq serve [-c config.yaml] [--check]\n\nRuns the broker until SIGINT or SIGTERM (graceful; a second signal exits at once).\nSIGHUP reloads the password and ACL files.\n\n")
		fs.PrintDefaults()
	}
	path := configFlag(fs)
	check := fs.Bool("check", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return flagExit(err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "sockmq serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		fmt.Fprintf(stderr, "sockmq: %s\n", err)
		return 1
	}
	if *check {
		fmt.Fprintln(stdout, "configuration is valid")
		return 0
	}
	log := newLogger(cfg.Logging, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	app, err := start(cfg, log)
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-hup:
			app.reload()
		}
	}
	stop() // a second SIGINT/SIGTERM now kills the process at once
	log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := app.shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "error", err)
		return 1
	}
	return 0
}

// app is the running process: every component, wired together.
type app struct {
	log      *slog.Logger
	auth     *auth.Service
	broker   *broker.Server
	presence *presence.Tracker
	bridge   *bridge.Handler // nil when disabled
	cancel   context.CancelFunc
}

func start(cfg config.File, log *slog.Logger) (*app, error) {
	authSvc, err := auth.New(cfg.Auth, log)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	b, err := broker.New(cfg.Broker(), authSvc, reg, log)
	if err != nil {
		return nil, err
	}
	tracker := wirePresence(b, log)
	br, err := startBridge(cfg, b, authSvc, reg, log)
	if err != nil {
		_ = b.Shutdown(context.Background())
		tracker.Close()
		return nil, err
	}
	if err := b.Start(); err != nil {
		if br != nil {
			_ = br.Shutdown(context.Background())
		}
		_ = b.Shutdown(context.Background())
		tracker.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go authSvc.Watch(ctx, time.Second)
	return &app{log: log, auth: authSvc, broker: b, presence: tracker, bridge: br, cancel: cancel}, nil
}

// startBridge builds the SocketCluster bridge and mounts it on the broker's
// HTTP listener (before the broker starts). It returns nil when the bridge
// is disabled or there is no HTTP listener.
func startBridge(cfg config.File, b *broker.Server, authSvc *auth.Service, reg prometheus.Registerer, log *slog.Logger) (*bridge.Handler, error) {
	if !cfg.Bridge.Enabled {
		return nil, nil
	}
	if cfg.Listeners.HTTP.Address == "" {
		log.Warn("bridge.enabled is true but listeners.http.address is empty: the SocketCluster bridge is not served")
		return nil, nil
	}
	br, err := bridge.New(cfg.Bridge, bridge.Options{
		Broker:     brokerAdapter{b},
		Authorizer: authAdapter{authSvc},
		Registerer: reg,
		DataDir:    cfg.Persistence.DataDir,
	}, log.With("component", "bridge"))
	if err != nil {
		return nil, err
	}
	for _, p := range br.Paths() {
		b.Handle(p, br)
	}
	return br, nil
}

func (a *app) reload() {
	a.log.Info("SIGHUP: reloading password and ACL files")
	if err := a.auth.Reload(); err != nil {
		a.log.Error("reload failed; previous rules stay in force", "error", err)
	}
}

func (a *app) shutdown(ctx context.Context) error {
	a.cancel()
	// Bridge sockets go first (1001: clients reconnect after back-off),
	// then the broker.
	var berr error
	if a.bridge != nil {
		berr = a.bridge.Shutdown(ctx)
	}
	err := errors.Join(berr, a.broker.Shutdown(ctx))
	a.presence.Close()
	return err
}

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

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
)

// shutdownTimeout bounds a graceful shutdown; a second signal skips it.
const shutdownTimeout = 15 * time.Second

func newLogger(l config.Logging, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(strings.ToUpper(l.Level)))
	opts := &slog.HandlerOptions{Level: level}
	if strings.EqualFold(l.Format, "json") {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

const serveUsage = `Usage: sockmq serve [-c config.yaml] [--check]

Runs the broker until SIGINT or SIGTERM (graceful; a second signal exits at
once). SIGHUP reloads the password and ACL files. Without -c it runs on the
embedded defaults; relative paths in a file are relative to its directory.
--check checks the configuration as "sockmq check" does and exits.

`

func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockmq serve", flag.ContinueOnError)
	path := configFlag(fs)
	check := fs.Bool("check", false, "check the configuration and exit, as \"sockmq check\"")
	if code, done := parseFlags(fs, args, serveUsage, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return usageError(fs, serveUsage, stderr, "unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		consequence := "not started"
		if *check {
			consequence = "sockmq serve would refuse to start"
		}
		reportConfigError(stderr, *path, err, consequence)
		return 1
	}
	if *check {
		printOK(stdout, *path, cfg)
		return 0
	}
	log := newLogger(cfg.Logging, stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := app.New(cfg, log)
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	if err := a.Start(); err != nil {
		log.Error("start failed", "error", err)
		if hint := bindHint(err, cfg); hint != "" {
			fmt.Fprintln(stderr, hint)
		}
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
			log.Info("SIGHUP: reloading password and ACL files")
			if err := a.Reload(); err != nil {
				log.Error("reload failed; previous rules stay in force", "error", err)
			}
		}
	}
	stop() // a second SIGINT/SIGTERM now kills the process at once
	log.Info("shutting down", "timeout", shutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := a.Shutdown(sctx); err != nil {
		log.Error("shutdown incomplete", "error", err)
		return 1
	}
	return 0
}

// bindHint explains an address already in use: which key holds it and what
// to do. It returns "" for other errors.
func bindHint(err error, cfg config.File) string {
	if !errors.Is(err, syscall.EADDRINUSE) {
		return ""
	}
	key, _, _ := strings.Cut(err.Error(), ":")
	addr := map[string]string{
		"listeners.mqtt":     cfg.Listeners.MQTT.Address,
		"listeners.mqtt_tls": cfg.Listeners.MQTTTLS.Address,
		"listeners.http":     cfg.Listeners.HTTP.Address,
	}[key]
	if addr == "" {
		key, addr = "a listener address", "it"
	} else {
		key += ".address"
	}
	return fmt.Sprintf("sockmq: %s %s is already in use by another process (another sockmq, or mosquitto?). "+
		"Stop that process, or start sockmq with a configuration file that sets other addresses: sockmq -c my.yaml (config.yaml lists every key).", key, addr)
}

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
	a, err := app.New(cfg, log)
	if err != nil {
		log.Error("start failed", "error", err)
		return 1
	}
	if err := a.Start(); err != nil {
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

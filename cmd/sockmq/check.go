package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/sockmq/sockmq/config"
)

const checkUsage = `Usage: sockmq check [-c config.yaml]

Reads a configuration as "sockmq serve" would, starts nothing, and lists
every problem at once, each with its file, line and key path, for example:

  config.yaml:3: listeners.mqtt.adress: unknown key (did you mean address?)

Without -c it checks the embedded defaults (what plain "sockmq" runs).
Relative paths in a file are relative to the file's directory.
Exit status: 0 valid (it prints "ok" and what would run), 1 problems,
2 usage error.

`

func runCheck(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockmq check", flag.ContinueOnError)
	path := configFlag(fs)
	if code, done := parseFlags(fs, args, checkUsage, stdout, stderr); done {
		return code
	}
	switch {
	case fs.NArg() == 1 && *path == "":
		*path = fs.Arg(0)
	case fs.NArg() > 0:
		return usageError(fs, checkUsage, stderr, "unexpected argument %q", fs.Arg(0))
	}
	cfg, err := loadConfig(*path)
	if err != nil {
		reportConfigError(stderr, *path, err, "sockmq serve would refuse to start")
		return 1
	}
	printOK(stdout, *path, cfg)
	return 0
}

// loadConfig reads the file at path, or the embedded defaults when path is
// empty, through the same checks.
func loadConfig(path string) (config.File, error) {
	if path == "" {
		return config.Parse(nil)
	}
	return config.Load(path)
}

// reportConfigError prints every problem, one per line, then a summary
// line saying what follows from them.
func reportConfigError(w io.Writer, path string, err error, consequence string) {
	var ce *config.Error
	if !errors.As(err, &ce) {
		fmt.Fprintf(w, "sockmq: %v\n", err)
		return
	}
	fmt.Fprintln(w, ce.Error())
	name := path
	if name == "" {
		name = "the embedded defaults"
	}
	n := len(ce.Problems)
	noun := "problems"
	if n == 1 {
		noun = "problem"
	}
	fmt.Fprintf(w, "%s: %d %s; %s\n", name, n, noun, consequence)
}

// printOK says that the configuration is valid and what it would run.
func printOK(w io.Writer, path string, cfg config.File) {
	name := "the embedded defaults are"
	if path != "" {
		name = path + " is"
	}
	fmt.Fprintf(w, "ok: %s valid; sockmq serve would run:\n", name)
	row := func(what, value string) { fmt.Fprintf(w, "  %-14s %s\n", what, value) }
	l := cfg.Listeners
	row("MQTT", orOff(l.MQTT.Address))
	row("MQTT over TLS", orOff(l.MQTTTLS.Address))
	if l.HTTP.Address == "" {
		row("HTTP", "off")
	} else {
		scheme := "http"
		if l.HTTP.CertFile != "" {
			scheme = "https"
		}
		served := []string{"MQTT over WebSocket at " + l.HTTP.MQTTPath}
		if cfg.Bridge.Enabled {
			served = append(served, "SocketCluster at "+cfg.Bridge.Paths()[1])
		}
		row("HTTP", fmt.Sprintf("%s://%s (%s, /healthz, /metrics)", scheme, l.HTTP.Address, strings.Join(served, ", ")))
	}
	a := cfg.Auth
	anonymous := a.PasswordFile == ""
	if a.AllowAnonymous != nil {
		anonymous = *a.AllowAnonymous
	}
	users := "no password file"
	if a.PasswordFile != "" {
		users = "password file " + a.PasswordFile
	}
	if anonymous {
		users += "; anonymous clients allowed"
	} else {
		users += "; anonymous clients refused"
	}
	row("clients", users)
	if a.ACLFile != "" {
		row("ACL", a.ACLFile)
	} else {
		row("ACL", "none: every client may read and write every topic")
	}
	if cfg.Persistence.Enabled {
		dir := cfg.Persistence.DataDir
		if abs, err := filepath.Abs(dir); err == nil && abs != dir {
			dir += " (" + abs + ")"
		}
		row("data", dir)
	} else {
		row("data", "not kept (persistence.enabled: false)")
	}
	if c := cfg.Cluster; c != nil && c.Embedded != nil && c.Embedded.StoreDir == "" {
		cc := *c
		e := *c.Embedded
		e.StoreDir = cfg.ClusterStoreDir()
		cc.Embedded = &e
		row("cluster", cc.Describe())
	} else {
		row("cluster", c.Describe())
	}
}

func orOff(addr string) string {
	if addr == "" {
		return "off"
	}
	return addr
}

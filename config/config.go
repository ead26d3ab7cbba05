// Package config reads sockmq's YAML configuration file into the
// configuration values of each package (broker, auth, bridge, lwt), applies
// the embedded defaults, and validates everything in one pass so that an
// operator sees every problem at once, each with its key path and line:
// the YAML tree is first checked against the yaml tags of those types
// (unknown keys, values of the wrong kind), then decoded and validated.
// Relative paths in a file are resolved against the file's directory.
//
// Concurrency: the functions are pure; a *File is a value the caller owns.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/internal/netutil"
	"github.com/sockmq/sockmq/lwt"
)

// File is the whole configuration file.
type File struct {
	// Listeners, Limits and Persistence configure the broker.
	Listeners   broker.Listeners   `yaml:"listeners"`
	Limits      broker.Limits      `yaml:"limits"`
	Persistence broker.Persistence `yaml:"persistence"`
	// Logging configures the process log.
	Logging Logging `yaml:"logging"`
	// Auth configures password-file authentication and the ACL.
	Auth auth.Config `yaml:"auth"`
	// Bridge configures the SocketCluster bridge.
	Bridge bridge.Config `yaml:"bridge"`
	// LWT configures last wills for bridge clients.
	LWT lwt.Config `yaml:"lwt"`
	// Cluster joins this node to a sockmq cluster over NATS; nil (no
	// cluster: section) runs a single node.
	Cluster *cluster.Config `yaml:"cluster"`
}

// Logging configures the process log.
type Logging struct {
	// Level is debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text or json. Default text.
	Format string `yaml:"format"`
}

// Default returns the embedded defaults: what `sockmq` runs with when no
// file is given.
func Default() File {
	b := broker.Defaults()
	return File{
		Listeners:   b.Listeners,
		Limits:      b.Limits,
		Persistence: b.Persistence,
		Logging:     Logging{Level: "info", Format: "text"},
		Bridge:      bridge.Defaults(),
		LWT:         lwt.Defaults(),
	}
}

// Broker returns the broker's configuration, with the origins of the
// deprecated bridge.allowed_origins added to listeners.http.allowed_origins.
func (f File) Broker() broker.Config {
	l := f.Listeners
	l.HTTP.AllowedOrigins = f.AllowedOrigins()
	return broker.Config{Listeners: l, Limits: f.Limits, Persistence: f.Persistence}
}

// AllowedOrigins returns the web page origins allowed to open WebSockets on
// the HTTP listener: listeners.http.allowed_origins plus the deprecated
// alias bridge.allowed_origins. Both apply to /mqtt and the bridge alike.
func (f File) AllowedOrigins() []string {
	out := make([]string, 0, len(f.Listeners.HTTP.AllowedOrigins)+len(f.Bridge.AllowedOrigins))
	out = append(out, f.Listeners.HTTP.AllowedOrigins...)
	return append(out, f.Bridge.AllowedOrigins...)
}

// Load reads the file at path over the embedded defaults, resolves the
// relative paths of the result (data_dir, password_file, acl_file, TLS
// files, the default ./data included) against the file's directory, and
// validates it. Invalid files give an *Error listing every problem with
// the file name, its line and key path.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read config: %w", err)
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return File{}, fmt.Errorf("read config: %w", err)
	}
	f, err := parse(data, base)
	var ce *Error
	if errors.As(err, &ce) {
		ce.File = path
	}
	return f, err
}

// Parse decodes YAML over the defaults and validates the result; relative
// paths stay relative to the working directory. Invalid input gives an
// *Error listing every problem with its line and key path: unknown keys,
// values of the wrong kind, and everything Validate finds.
func Parse(data []byte) (File, error) {
	return parse(data, "")
}

// parse checks the YAML tree against the configuration types (unknown
// keys, wrong kinds), decodes what it can over the defaults, resolves
// relative paths against base when it is not empty, validates, and
// reports every problem at once.
func parse(data []byte, base string) (File, error) {
	f := Default()
	w := &walker{root: reflect.TypeOf(f), lines: map[string]int{}}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil && !errors.Is(err, io.EOF) {
		return File{}, newError("", []Problem{syntaxProblem(err)})
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root := doc.Content[0]
		w.walk(root, w.root, "")
		// Decode whatever is right, so that the values are checked too; a
		// value reported above keeps its default.
		if err := root.Decode(&f); err != nil && len(w.problems) == 0 {
			w.problems = append(w.problems, Problem{Msg: cleanYAMLError(err), Err: err})
		}
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil {
		w.add("", next.Line, "a second YAML document (after ---): write the whole configuration as one document")
	}
	if base != "" {
		f.resolvePaths(base)
	}
	problems := append(w.problems, problemsOf(f.Validate(), w.lines)...)
	if err := newError("", problems); err != nil {
		return File{}, err
	}
	return f, nil
}

// syntaxProblem turns a YAML syntax error into a problem with its line.
func syntaxProblem(err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if l, aerr := strconv.Atoi(n); aerr == nil {
				line, msg = l, after
			}
		}
	}
	return Problem{Line: line, Msg: "not valid YAML: " + msg, Err: err}
}

// cleanYAMLError turns yaml.v3's messages into one line per problem.
func cleanYAMLError(err error) string {
	msg := err.Error()
	msg = strings.TrimPrefix(msg, "yaml: unmarshal errors:\n")
	lines := strings.Split(msg, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimSpace(l)
	}
	return strings.Join(lines, "; ")
}

// Validate reports every problem at once.
func (f File) Validate() error {
	var errs []error
	if err := f.Broker().Validate(); err != nil {
		errs = append(errs, err)
	}
	switch strings.ToLower(f.Logging.Level) {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("logging.level: %q must be debug, info, warn or error", f.Logging.Level))
	}
	switch strings.ToLower(f.Logging.Format) {
	case "text", "json":
	default:
		errs = append(errs, fmt.Errorf("logging.format: %q must be text or json", f.Logging.Format))
	}
	if err := f.LWT.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := f.Auth.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := f.Bridge.Validate(); err != nil {
		errs = append(errs, err)
	}
	if err := f.checkBridgePath(); err != nil {
		errs = append(errs, err)
	}
	if err := f.checkExposure(); err != nil {
		errs = append(errs, err)
	}
	if err := f.checkCluster(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkBridgePath refuses a bridge path that collides with another handler
// on the HTTP listener.
func (f File) checkBridgePath() error {
	if !f.Bridge.Enabled || f.Bridge.Validate() != nil {
		return nil
	}
	mqttPath := strings.TrimRight(f.Listeners.HTTP.MQTTPath, "/")
	for _, p := range f.Bridge.Paths() {
		p = strings.TrimRight(p, "/")
		if p == mqttPath || p == "/healthz" || p == "/metrics" {
			return fmt.Errorf("bridge.path: %q collides with %s on the HTTP listener", f.Bridge.Path, p)
		}
	}
	return nil
}

// checkExposure refuses anonymous access on a non-loopback listener unless
// the file says so explicitly, like mosquitto 2.
func (f File) checkExposure() error {
	anonymous := f.Auth.AllowAnonymous
	if f.Auth.PasswordFile != "" || (anonymous != nil && *anonymous) {
		return nil
	}
	for _, l := range []struct{ key, addr string }{
		{"listeners.mqtt.address", f.Listeners.MQTT.Address},
		{"listeners.mqtt_tls.address", f.Listeners.MQTTTLS.Address},
		{"listeners.http.address", f.Listeners.HTTP.Address},
	} {
		if l.addr != "" && !netutil.IsLoopback(l.addr) {
			return fmt.Errorf("%s: %s is not loopback and no auth.password_file is set; set auth.password_file, or auth.allow_anonymous: true to accept anonymous clients from the network", l.key, l.addr)
		}
	}
	return nil
}

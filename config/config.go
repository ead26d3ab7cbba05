// Package config reads sockmq's YAML configuration file into the
// configuration values of each package (broker, auth, bridge, lwt), applies
// the embedded defaults, and validates everything in one pass so that an
// operator sees every problem at once, each naming its key.
//
// Concurrency: the functions are pure; a *File is a value the caller owns.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/broker"
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

// Load reads and validates the file at path.
func Load(path string) (File, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return File{}, fmt.Errorf("read config: %w", err)
	}
	f, err := Parse(data)
	if err != nil {
		return File{}, fmt.Errorf("%s: %w", path, err)
	}
	return f, nil
}

// Parse decodes YAML over the defaults and validates the result. Unknown
// keys are errors.
func Parse(data []byte) (File, error) {
	f := Default()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return File{}, fmt.Errorf("parse: %s", cleanYAMLError(err))
	}
	if err := f.Validate(); err != nil {
		return File{}, err
	}
	return f, nil
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
		if l.addr != "" && !isLoopback(l.addr) {
			return fmt.Errorf("auth: %s is %s, not loopback, and no auth.password_file is set; set auth.password_file, or auth.allow_anonymous: true to accept anonymous clients from the network", l.key, l.addr)
		}
	}
	return nil
}

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

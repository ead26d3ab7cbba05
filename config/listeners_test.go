package config_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
)

// listeners.http.allowed_origins is the key; bridge.allowed_origins is a
// deprecated alias whose origins are added to it, so that they apply to
// /mqtt too.
func TestAllowedOriginsAndDeprecatedAlias(t *testing.T) {
	f, err := config.Parse([]byte("listeners:\n  http: {allowed_origins: [https://a.example]}\nbridge: {allowed_origins: [https://b.example]}\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"https://a.example", "https://b.example"}
	if got := f.Broker().Listeners.HTTP.AllowedOrigins; !slices.Equal(got, want) {
		t.Errorf("broker allowed origins %v, want %v", got, want)
	}
	if got := f.AllowedOrigins(); !slices.Equal(got, want) {
		t.Errorf("AllowedOrigins() = %v, want %v", got, want)
	}
	if len(config.Default().AllowedOrigins()) != 0 {
		t.Error("the default must be same origin only (an empty list)")
	}
	for yaml, key := range map[string]string{
		"listeners:\n  http: {allowed_origins: [example.com]}\n": "listeners.http.allowed_origins: \"example.com\"",
		"bridge: {allowed_origins: [\"https://x/y\"]}\n":         "bridge.allowed_origins: \"https://x/y\"",
	} {
		if _, err := config.Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%q: error %v, want one naming %s", yaml, err, key)
		}
	}
}

// The keys of the HTTP listener's protections and of the connection caps
// parse, have their defaults, and are documented in config.yaml.
func TestConnectionLimitKeys(t *testing.T) {
	f, err := config.Parse([]byte("listeners:\n  http: {read_timeout: 3s, idle_timeout: 7s}\nlimits: {max_connections: 10, max_connections_per_address: 4}\n"))
	if err != nil {
		t.Fatal(err)
	}
	h, l := f.Listeners.HTTP, f.Limits
	if h.ReadTimeout != 3*time.Second || h.IdleTimeout != 7*time.Second || l.MaxConnections != 10 || l.MaxConnectionsPerAddress != 4 {
		t.Fatalf("parsed %+v %+v", h, l)
	}
	d := config.Default()
	if d.Listeners.HTTP.ReadTimeout != 10*time.Second || d.Listeners.HTTP.IdleTimeout != time.Minute || d.Limits.MaxConnectionsPerAddress != 0 {
		t.Fatalf("defaults %+v %+v", d.Listeners.HTTP, d.Limits)
	}
	_, err = config.Parse([]byte("listeners:\n  http: {read_timeout: -1s, idle_timeout: -1s}\nlimits: {max_connections_per_address: -1}\n"))
	for _, key := range []string{"listeners.http.read_timeout:", "listeners.http.idle_timeout:", "limits.max_connections_per_address:"} {
		if err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("negative value: error %v does not name %s", err, key)
		}
	}
	data, err := os.ReadFile(filepath.Join("..", "config.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(data)
	http := doc[strings.Index(doc, "\n  http:"):strings.Index(doc, "\nlimits:")]
	for _, key := range []string{"allowed_origins: []", "read_timeout: 10s", "idle_timeout: 60s"} {
		if !strings.Contains(http, key) {
			t.Errorf("config.yaml does not document listeners.http.%s", key)
		}
	}
	if !strings.Contains(doc, "max_connections_per_address: 0") {
		t.Error("config.yaml does not document limits.max_connections_per_address")
	}
}

package config_test

import (
	"slices"
	"strings"
	"testing"

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

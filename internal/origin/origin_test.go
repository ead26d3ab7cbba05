package origin

import (
	"crypto/tls"
	"net/http"
	"strings"
	"testing"
)

func TestPolicy(t *testing.T) {
	listed, err := Parse([]string{"https://App.Example.com/", "http://[::1]:3000", "capacitor://localhost"})
	if err != nil {
		t.Fatal(err)
	}
	sameOnly, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	anyOrigin, err := Parse([]string{"https://x.example", "*"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		p      *Policy
		host   string
		tls    bool
		origin string
		want   bool
	}{
		{"no origin: not a browser", sameOnly, "broker:8080", false, "", true},
		{"same origin", sameOnly, "broker:8080", false, "http://broker:8080", true},
		{"same origin, case and default port", sameOnly, "Broker", false, "HTTP://broker:80", true},
		{"same origin over TLS", sameOnly, "broker:8443", true, "https://broker:8443", true},
		{"http page on a TLS listener", sameOnly, "broker:8443", true, "http://broker:8443", false},
		{"other port", sameOnly, "broker:8080", false, "http://broker:8081", false},
		{"other host", sameOnly, "broker:8080", false, "http://evil.example:8080", false},
		{"null origin", sameOnly, "broker:8080", false, "null", false},
		{"garbage", sameOnly, "broker:8080", false, "::", false},
		{"origin with a path", sameOnly, "broker:8080", false, "http://broker:8080/x", false},
		{"listed", listed, "broker:8080", false, "https://app.example.com", true},
		{"listed, explicit default port", listed, "broker:8080", false, "https://app.example.com:443", true},
		{"listed IPv6", listed, "broker:8080", false, "http://[::1]:3000", true},
		{"listed custom scheme", listed, "broker:8080", false, "capacitor://localhost", true},
		{"listed host, other scheme", listed, "broker:8080", false, "http://app.example.com", false},
		{"own origin with a list", listed, "broker:8080", false, "http://broker:8080", true},
		{"star", anyOrigin, "broker:8080", false, "https://evil.example", true},
		{"star allows null", anyOrigin, "broker:8080", false, "null", true},
	}
	for _, tc := range tests {
		r, _ := http.NewRequest("GET", "/mqtt", nil)
		r.Host = tc.host
		if tc.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		if got := tc.p.Allowed(r); got != tc.want {
			t.Errorf("%s: Allowed(Host %s, Origin %q) = %v, want %v", tc.name, tc.host, tc.origin, got, tc.want)
		}
	}
}

func TestParseReportsEveryBadEntry(t *testing.T) {
	err := Validate("listeners.http.allowed_origins", []string{"example.com", "https://ok.example", "https://x.example/path", "null"})
	if err == nil {
		t.Fatal("bad entries accepted")
	}
	for _, bad := range []string{`"example.com"`, `"https://x.example/path"`, `"null"`} {
		if !strings.Contains(err.Error(), "listeners.http.allowed_origins: "+bad) {
			t.Errorf("error %q does not name %s", err, bad)
		}
	}
}

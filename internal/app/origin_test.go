package app_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
)

// upgradeStatus sends a raw WebSocket upgrade for path to addr, with the
// given Origin header ("" = none), and returns the HTTP status.
func upgradeStatus(t *testing.T, addr, host, path, origin string) int {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
	if path == "/mqtt" {
		req += "Sec-WebSocket-Protocol: mqtt\r\n"
	}
	if origin != "" {
		req += "Origin: " + origin + "\r\n"
	}
	if _, err := c.Write([]byte(req + "\r\n")); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s with Origin %q: %v", path, origin, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A web page the local user visits must not be able to open the broker's
// WebSockets (cross-site WebSocket hijacking): an upgrade carrying an
// Origin is accepted only from the listener's own origin or from
// listeners.http.allowed_origins, on /mqtt and /socketcluster/ alike.
// Clients without an Origin (devices, servers) are not affected.
func TestWebSocketOriginDefaultIsSameOrigin(t *testing.T) {
	a := startApp(t, nil)
	addr := a.Broker.HTTPAddr()
	_, port, _ := net.SplitHostPort(addr)
	for _, path := range []string{"/mqtt", "/socketcluster/"} {
		for _, tc := range []struct {
			host, origin string
			want         int
		}{
			{addr, "", http.StatusSwitchingProtocols},                                        // not a browser
			{addr, "http://" + addr, http.StatusSwitchingProtocols},                          // the page came from this listener
			{"LOCALHOST:" + port, "http://localhost:" + port, http.StatusSwitchingProtocols}, // same origin, any case
			{addr, "http://evil.example", http.StatusForbidden},                              // another site
			{addr, "http://127.0.0.1:1", http.StatusForbidden},                               // same host, another port
			{addr, "https://" + addr, http.StatusForbidden},                                  // another scheme
			{"localhost:" + port, "http://" + addr, http.StatusForbidden},                    // another host name
			{addr, "null", http.StatusForbidden},                                             // sandboxed or file:// page
		} {
			if got := upgradeStatus(t, addr, tc.host, path, tc.origin); got != tc.want {
				t.Errorf("%s, Host %s, Origin %q: status %d, want %d", path, tc.host, tc.origin, got, tc.want)
			}
		}
	}
}

func TestWebSocketOriginAllowList(t *testing.T) {
	a := startApp(t, func(f *config.File) {
		f.Listeners.HTTP.AllowedOrigins = []string{"https://app.example.com", "http://127.0.0.1:9"}
	})
	addr := a.Broker.HTTPAddr()
	for _, path := range []string{"/mqtt", "/socketcluster/"} {
		for origin, want := range map[string]int{
			"https://app.example.com":     http.StatusSwitchingProtocols,
			"https://APP.example.com:443": http.StatusSwitchingProtocols, // default port, any case
			"http://127.0.0.1:9":          http.StatusSwitchingProtocols,
			"http://" + addr:              http.StatusSwitchingProtocols, // own origin still allowed
			"http://app.example.com":      http.StatusForbidden,
			"https://evil.example":        http.StatusForbidden,
		} {
			if got := upgradeStatus(t, addr, addr, path, origin); got != want {
				t.Errorf("%s, Origin %q: status %d, want %d", path, origin, got, want)
			}
		}
	}
	// Refusals are counted and logged (rate-limited) through the limit recorder.
	body := metricsText(t, addr)
	if !strings.Contains(body, `sockmq_limit_refusals_total{limit="allowed_origins"} 4`) {
		t.Errorf("/metrics does not count the 4 refused origins:\n%s", grepLines(body, "limit_refusals"))
	}
}

// The deprecated bridge.allowed_origins still works, for /mqtt as well, and
// "*" must be written to allow any page.
func TestWebSocketOriginDeprecatedBridgeKeyAndWildcard(t *testing.T) {
	a := startApp(t, func(f *config.File) { f.Bridge.AllowedOrigins = []string{"https://old.example"} })
	var logged bytes.Buffer
	cfg := config.Default()
	cfg.Persistence.Enabled = false
	cfg.Persistence.DataDir = t.TempDir() // the bridge keeps its token key there
	cfg.Bridge.AllowedOrigins = []string{"https://old.example"}
	quiet, err := app.New(cfg, slog.New(slog.NewTextHandler(&logged, nil)))
	if err != nil {
		t.Fatal(err)
	}
	_ = quiet.Shutdown(context.Background())
	if !strings.Contains(logged.String(), "bridge.allowed_origins is deprecated") {
		t.Errorf("no deprecation warning for bridge.allowed_origins in the log:\n%s", logged.String())
	}
	addr := a.Broker.HTTPAddr()
	for _, path := range []string{"/mqtt", "/socketcluster/"} {
		if got := upgradeStatus(t, addr, addr, path, "https://old.example"); got != http.StatusSwitchingProtocols {
			t.Errorf("%s: origin listed in bridge.allowed_origins refused (%d)", path, got)
		}
		if got := upgradeStatus(t, addr, addr, path, "https://other.example"); got != http.StatusForbidden {
			t.Errorf("%s: unlisted origin got %d, want 403", path, got)
		}
	}
	b := startApp(t, func(f *config.File) { f.Listeners.HTTP.AllowedOrigins = []string{"*"} })
	for _, path := range []string{"/mqtt", "/socketcluster/"} {
		if got := upgradeStatus(t, b.Broker.HTTPAddr(), b.Broker.HTTPAddr(), path, "https://any.example"); got != http.StatusSwitchingProtocols {
			t.Errorf("%s with [\"*\"]: status %d, want 101", path, got)
		}
	}
}

func metricsText(t *testing.T, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		fmt.Fprintln(&sb, sc.Text())
	}
	return sb.String()
}

func grepLines(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

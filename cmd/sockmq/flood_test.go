package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sockmq/sockmq/internal/testutil"
)

// Thousands of keep-alive HTTP connections that made one request each and
// went silent used to exhaust the broker's file descriptors, after which
// MQTT CONNECTs and /healthz failed. The broker runs here with the default
// limits.max_connections under an open-file limit of 1024 (prlimit; where
// it is missing, limits.max_connections: 900 stands in). It must keep
// serving an established client, answer /healthz and accept a new MQTT
// client during and after 3,000 such connections, and close the idle ones
// after listeners.http.idle_timeout.
func TestIdleHTTPFloodDoesNotLockOut(t *testing.T) {
	testStart := time.Now()
	flood := 3000
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err == nil && rl.Cur < uint64(flood)+256 {
		flood = int(rl.Cur) - 256
		t.Logf("the test process may open %d files: flooding with %d connections", rl.Cur, flood)
	}
	const idleTimeout = 3 * time.Second
	bin, extra := testutil.Binary(t), ""
	if prlimit, err := exec.LookPath("prlimit"); err == nil {
		wrapper := filepath.Join(t.TempDir(), "sockmq-nofile-1024")
		script := fmt.Sprintf("#!/bin/sh\nexec %s --nofile=1024:1024 %s \"$@\"\n", prlimit, bin)
		if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		bin = wrapper
	} else {
		extra = "limits: {max_connections: 900}\n"
		t.Log("prlimit not found: limits.max_connections: 900 stands in for the open-file limit")
	}
	p := testutil.StartProc(t, testutil.ProcOptions{Binary: bin, Config: func(mqttAddr, httpAddr, dataDir string) string {
		return fmt.Sprintf("listeners:\n  mqtt: {address: %q}\n  http: {address: %q, idle_timeout: %s}\npersistence: {data_dir: %q}\nlogging: {level: info}\n%s",
			mqttAddr, httpAddr, idleTimeout, dataDir, extra)
	}})
	t.Logf("broker started %v into the test", time.Since(testStart).Round(time.Millisecond))
	healthy := testutil.StartHealthy(t, p.MQTT, 0)
	rssBefore := p.RSS(t)

	// The flood: 8 workers, each connection makes one keep-alive request
	// and stays open and silent.
	conns := make([]net.Conn, flood)
	statuses := make([]int, flood)
	start := time.Now()
	var wg sync.WaitGroup
	var failMu sync.Mutex
	var failures []string
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < flood; i += 8 {
				c, status, err := keepAliveRequest(p.HTTP)
				if err != nil {
					failMu.Lock()
					failures = append(failures, err.Error())
					failMu.Unlock()
					continue
				}
				conns[i], statuses[i] = c, status
			}
		}()
	}
	wg.Wait()
	floodTime := time.Since(start)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	if len(failures) > 0 {
		t.Fatalf("%d of %d flood connections got no answer within 5s, e.g. %s", len(failures), flood, failures[0])
	}
	ok := 0
	for _, s := range statuses {
		if s == http.StatusOK {
			ok++
		}
	}
	rssPeak := p.RSS(t)

	// Still serving: /healthz and a new MQTT client.
	if !p.Healthy() {
		t.Fatal("/healthz fails after the flood")
	}
	testutil.MustConnect5(t, p.MQTT, "after-flood")
	reclaimed := metricValue(fetch(t, p.HTTP, "/metrics"), `sockmq_limit_refusals_total{limit="http_idle_reclaimed"}`)

	// The idle connections left are closed by the idle timeout.
	deadline := time.Now().Add(idleTimeout + 5*time.Second)
	for i, c := range conns {
		if !closedByServer(c, time.Until(deadline)) {
			t.Fatalf("flood connection %d still open %v after the flood, idle timeout %v", i, time.Since(start.Add(floodTime)), idleTimeout)
		}
	}
	closedAfter := time.Since(start.Add(floodTime))
	metrics := fetch(t, p.HTTP, "/metrics")
	for _, l := range []string{"http_idle_reclaimed", "http_idle_timeout"} {
		if strings.Contains(metrics, `sockmq_limit_refusals_total{limit="`+l+`"} 0`) {
			t.Errorf("%s not counted:\n%s", l, grep(metrics, "sockmq_limit_refusals_total"))
		}
	}
	out := p.Output()
	if strings.Contains(out, "too many open files") || strings.Contains(out, "accept failed") {
		t.Errorf("the broker ran out of file descriptors:\n%s", grep(out, "accept"))
	}
	// One log line per limit, not one per connection.
	for _, l := range []string{"limit=http_idle_reclaimed", "limit=http_idle_timeout"} {
		if n := strings.Count(out, l); n < 1 || n > 3 {
			t.Errorf("%d log lines with %s, want 1 to 3 (rate-limited):\n%s", n, l, grep(out, l))
		}
	}
	t.Logf("flood: %d keep-alive connections in %v, %d answered 200; %s closed to make room during the flood, the rest by the idle timeout within %v",
		flood, floodTime.Round(time.Millisecond), ok, reclaimed, closedAfter.Round(100*time.Millisecond))
	t.Logf("%s; broker RSS %d MiB before, %d MiB at the peak, %d MiB after", healthy.Check(t), rssBefore>>20, rssPeak>>20, p.RSS(t)>>20)
	t.Logf("%s", grep(p.Output(), "max_connections lowered"))
}

// keepAliveRequest opens a connection, makes one keep-alive request and
// returns the open connection and the status.
func keepAliveRequest(addr string) (net.Conn, int, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, 0, err
	}
	_ = c.SetDeadline(time.Now().Add(testutil.LossOfService))
	if _, err := io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		c.Close()
		return nil, 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		c.Close()
		return nil, 0, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return c, resp.StatusCode, nil
}

// closedByServer waits up to within for the server to close c.
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// metricValue returns the value of the metric line starting with name.
func metricValue(metrics, name string) string {
	for _, l := range strings.Split(metrics, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return "absent"
}

func fetch(t *testing.T, addr, path string) string {
	t.Helper()
	c := http.Client{Timeout: testutil.LossOfService}
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func grep(s, substr string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

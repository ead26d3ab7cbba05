package broker_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
)

// Raw CONNECT packets (client ids "r5" and "r3").
var (
	rawConnect5 = []byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 5, 0x02, 0, 60, 0, 0, 2, 'r', '5'}
	rawConnect3 = []byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'r', '3'}
)

// connackOf sends connect on a new connection (from laddr when not
// empty) and returns the CONNACK's reason code (MQTT 5) or return code
// (3.1.1), and the connection.
func connackOf(t *testing.T, addr, laddr string, connect []byte) (byte, net.Conn) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if laddr != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(laddr)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(connect); err != nil {
		t.Fatal(err)
	}
	var hdr [2]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil || hdr[0] != 0x20 || hdr[1] < 2 || hdr[1] > 127 {
		t.Fatalf("no CONNACK: % x, %v", hdr, err)
	}
	body := make([]byte, hdr[1])
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("CONNACK cut short: %v", err)
	}
	_ = c.SetDeadline(time.Time{})
	return body[1], c
}

// keepAlive opens an HTTP/1.1 connection, makes one request on it and
// leaves it open and idle (keep-alive). It returns the status and the
// connection.
func keepAlive(t *testing.T, addr, path string) (int, net.Conn) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	_ = c.SetDeadline(time.Time{})
	return resp.StatusCode, c
}

// closedByServer waits up to within for the server to close c and
// reports whether it did.
func closedByServer(c net.Conn, within time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(within))
	_, err := c.Read(make([]byte, 1))
	return err != nil && !errors.Is(err, os.ErrDeadlineExceeded)
}

// limitCount returns sockmq_limit_refusals_total{limit=...} from
// /metrics, retrying while the broker answers 503 (a slot of a closed
// connection may not be free yet).
func limitCount(t *testing.T, addr, limit string) string {
	t.Helper()
	var body []byte
	testutil.WaitFor(t, 5*time.Second, func() bool {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ = io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK
	}, "/metrics to answer 200")
	prefix := `sockmq_limit_refusals_total{limit="` + limit + `"} `
	for _, l := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			return v
		}
	}
	return "absent"
}

// limits.max_connections counts every connection at accept, whatever the
// listener. At the cap, MQTT gets CONNACK "server busy" in its own
// protocol version and HTTP gets 503, each then closed; established
// clients keep being served.
func TestMaxConnectionsCountsEveryConnection(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxConnections = 3
	b := testutil.StartBroker(t, cfg, nil)
	sub := testutil.MustConnect5(t, b.MQTTAddr(), "sub")
	sub.Sub(t, "news", 1)
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	ws, _, err := testutil.Connect5(t, testutil.DialWS(t, b.HTTPAddr(), "/mqtt"), &paho.Connect{ClientID: "ws", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}

	if code, c := connackOf(t, b.MQTTAddr(), "", rawConnect5); code != 0x89 || !closedByServer(c, 5*time.Second) {
		t.Errorf("MQTT 5 CONNECT at the cap: CONNACK 0x%02x, want 0x89 (server busy) and then close", code)
	}
	if code, c := connackOf(t, b.MQTTAddr(), "", rawConnect3); code != 3 || !closedByServer(c, 5*time.Second) {
		t.Errorf("MQTT 3.1.1 CONNECT at the cap: CONNACK code %d, want 3 (server unavailable) and then close", code)
	}
	status, c := keepAlive(t, b.HTTPAddr(), "/healthz")
	if status != http.StatusServiceUnavailable {
		t.Errorf("HTTP at the cap: status %d, want 503", status)
	}
	if !closedByServer(c, 5*time.Second) {
		t.Error("the refused HTTP connection was left open")
	}

	pub.Pub(t, "news", 1, false, "still served")
	if m := sub.Next(t); string(m.Payload) != "still served" {
		t.Fatalf("established subscriber got %q", m.Payload)
	}
	ws.Drop() // a slot frees up: new connections are admitted again
	testutil.WaitFor(t, 5*time.Second, func() bool {
		code, c := connackOf(t, b.MQTTAddr(), "", rawConnect5)
		c.Close()
		return code == 0
	}, "a CONNECT to be accepted once a connection closed")
	if n, _ := strconv.Atoi(limitCount(t, b.HTTPAddr(), "max_connections")); n < 3 {
		t.Errorf(`sockmq_limit_refusals_total{limit="max_connections"} = %d, want at least the 3 refusals above`, n)
	}
	if n := limitCount(t, b.HTTPAddr(), "max_connections_per_address"); n != "0" {
		t.Errorf(`sockmq_limit_refusals_total{limit="max_connections_per_address"} = %s, want 0 (exported, off)`, n)
	}
}

// limits.max_connections_per_address caps one address's connections (all
// listeners together); other addresses are not affected.
func TestMaxConnectionsPerAddress(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxConnectionsPerAddress = 2
	b := testutil.StartBroker(t, cfg, nil)
	a1 := testutil.MustConnect5(t, b.MQTTAddr(), "a1")
	a1.Sub(t, "x", 1)
	_, idle := keepAlive(t, b.HTTPAddr(), "/healthz") // an idle keep-alive connection counts, and gives way
	// a2 reclaims the idle HTTP connection, once the HTTP server has marked
	// it idle (right after writing its response: poll for that moment).
	var a2 *testutil.Client5
	testutil.WaitFor(t, 5*time.Second, func() bool {
		c, ack, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "a2", CleanStart: true, KeepAlive: 30})
		if err == nil && ack.ReasonCode == 0 {
			a2 = c
			return true
		}
		return false
	}, "a2 to be admitted in place of the idle HTTP connection")
	if !closedByServer(idle, 5*time.Second) {
		t.Fatal("the idle keep-alive connection was not closed to admit a2")
	}
	if code, c := connackOf(t, b.MQTTAddr(), "127.0.0.1", rawConnect5); code != 0x89 || !closedByServer(c, 5*time.Second) {
		t.Errorf("third connection from 127.0.0.1: CONNACK 0x%02x, want 0x89 and then close", code)
	}
	if code, _ := connackOf(t, b.MQTTAddr(), "127.0.0.2", rawConnect5); code != 0 {
		t.Errorf("connection from 127.0.0.2: CONNACK 0x%02x, want success", code)
	}
	a2.Pub(t, "x", 1, false, "ok")
	if m := a1.Next(t); string(m.Payload) != "ok" {
		t.Fatalf("got %q", m.Payload)
	}
}

// Idle keep-alive HTTP connections give way to new connections at the cap:
// the one idle the longest is closed (HTTP allows a server to close an
// idle connection at any time) instead of refusing the newcomer.
func TestIdleHTTPConnectionsGiveWayAtTheCap(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxConnections = 4
	b := testutil.StartBroker(t, cfg, nil)
	var idle []net.Conn
	for range 4 {
		status, c := keepAlive(t, b.HTTPAddr(), "/healthz")
		if status != http.StatusOK {
			t.Fatalf("status %d", status)
		}
		idle = append(idle, c)
	}
	testutil.MustConnect5(t, b.MQTTAddr(), "newcomer")
	if status, _ := keepAlive(t, b.HTTPAddr(), "/healthz"); status != http.StatusOK {
		t.Fatalf("/healthz with the cap taken by idle connections: %d, want 200", status)
	}
	closed := make([]bool, len(idle))
	testutil.WaitFor(t, 5*time.Second, func() bool {
		n := 0
		for i, c := range idle {
			closed[i] = closed[i] || closedByServer(c, time.Millisecond)
			if closed[i] {
				n++
			}
		}
		return n == 2
	}, "two idle keep-alive connections to be closed, one per newcomer")
	if n := limitCount(t, b.HTTPAddr(), "http_idle_reclaimed"); n == "absent" || n == "0" {
		t.Errorf(`sockmq_limit_refusals_total{limit="http_idle_reclaimed"} = %s, want > 0`, n)
	}
}

// listeners.http.idle_timeout closes keep-alive connections that stay
// silent; listeners.http.read_timeout closes connections whose request
// does not arrive in time.
func TestHTTPIdleAndReadTimeouts(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Listeners.HTTP.IdleTimeout = time.Second
	cfg.Listeners.HTTP.ReadTimeout = time.Second
	b := testutil.StartBroker(t, cfg, nil)
	_, idle := keepAlive(t, b.HTTPAddr(), "/healthz")
	slow, err := net.Dial("tcp", b.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n"); err != nil { // never finished
		t.Fatal(err)
	}
	start := time.Now()
	if !closedByServer(idle, 5*time.Second) {
		t.Error("an idle keep-alive connection was still open 5s after listeners.http.idle_timeout (1s)")
	}
	if !closedByServer(slow, 5*time.Second) {
		t.Error("a connection with an unfinished request was still open 5s after listeners.http.read_timeout (1s)")
	}
	t.Logf("both closed after %v", time.Since(start).Round(10*time.Millisecond))
	for _, l := range []string{"http_idle_timeout", "http_read_timeout"} {
		if n := limitCount(t, b.HTTPAddr(), l); n != "1" {
			t.Errorf(`sockmq_limit_refusals_total{limit=%q} = %s, want 1`, l, n)
		}
	}
}

// Over TLS the refusal is sent inside TLS: CONNACK on the MQTT TLS
// listener, 503 on HTTPS.
func TestMaxConnectionsRefusesInsideTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxConnections = 1
	cfg.Listeners.MQTTTLS.Address = "127.0.0.1:0"
	cfg.Listeners.MQTTTLS.CertFile, cfg.Listeners.MQTTTLS.KeyFile = certFile, keyFile
	cfg.Listeners.HTTP.CertFile, cfg.Listeners.HTTP.KeyFile = certFile, keyFile
	b := testutil.StartBroker(t, cfg, nil)
	testutil.MustConnect5(t, b.MQTTAddr(), "only")
	tlsCfg := &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}

	c, err := tls.Dial("tcp", b.TLSAddr(), tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(rawConnect5); err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(c); len(got) < 4 || got[0] != 0x20 || got[3] != 0x89 {
		t.Errorf("MQTT over TLS at the cap: got % x, want CONNACK 0x89 and then close", got)
	}

	h, err := tls.Dial("tcp", b.HTTPAddr(), tlsCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	_ = h.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(h, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(h), nil)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("HTTPS at the cap: %v %v, want 503", resp, err)
	}
	resp.Body.Close()
}

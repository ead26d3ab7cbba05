package broker_test

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/internal/testutil"
)

// selfSigned writes a certificate for 127.0.0.1 and returns the file paths
// and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	certFile, keyFile = testutil.SelfSignedCert(t, t.TempDir())
	data, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		t.Fatal("the test certificate does not parse")
	}
	return certFile, keyFile, pool
}

func TestMQTTOverTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	cfg := testutil.BrokerConfig(t)
	cfg.Listeners.MQTTTLS.Address = "127.0.0.1:0"
	cfg.Listeners.MQTTTLS.CertFile, cfg.Listeners.MQTTTLS.KeyFile = certFile, keyFile
	b := testutil.StartBroker(t, cfg, nil)

	conn, err := tls.Dial("tcp", b.TLSAddr(), &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	c, _, err := testutil.Connect5(t, conn, &paho.Connect{ClientID: "tls5", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Sub(t, "secure/#", 1)
	plain := testutil.MustConnect5(t, b.MQTTAddr(), "plain")
	plain.Pub(t, "secure/x", 1, false, "over tls")
	if m := c.Next(t); string(m.Payload) != "over tls" {
		t.Fatalf("got %q", m.Payload)
	}
	v3, err := testutil.Connect3(t, "", func(o *pahov3.ClientOptions) {
		o.Servers = nil
		o.AddBroker("ssl://" + b.TLSAddr()).SetClientID("tls3").SetTLSConfig(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	})
	if err != nil {
		t.Fatalf("MQTT 3.1.1 over TLS: %v", err)
	}
	v3.Sub(t, "secure/#", 0)
	plain.Pub(t, "secure/y", 1, false, "v3 tls")
	if m := v3.Next(t); string(m.Payload()) != "v3 tls" {
		t.Fatalf("got %q", m.Payload())
	}
	// A plaintext MQTT client on the TLS port gets no CONNACK: the TLS
	// handshake fails and the connection is closed.
	raw := testutil.Dial(t, b.TLSAddr())
	defer raw.Close()
	_, _ = raw.Write([]byte{0x10, 0x0c, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 0})
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(raw)
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("plaintext connection on the TLS port left open")
	}
	if len(got) >= 2 && got[0] == 0x20 {
		t.Fatalf("plaintext client got a CONNACK on the TLS port: %x", got)
	}
}

func TestKeepaliveBounds(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.KeepaliveMax = 60 * time.Second
	cfg.Limits.KeepaliveMin = 10 * time.Second
	b := testutil.StartBroker(t, cfg, nil)
	check := func(ka uint16, want uint16) {
		t.Helper()
		_, ca, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: "ka", CleanStart: true, KeepAlive: ka})
		if err != nil {
			t.Fatalf("keepalive %d refused: %v", ka, err)
		}
		got := ka
		if ca.Properties != nil && ca.Properties.ServerKeepAlive != nil {
			got = *ca.Properties.ServerKeepAlive
		}
		if got != want {
			t.Fatalf("MQTT 5 keepalive %d: server keepalive %d, want %d", ka, got, want)
		}
	}
	check(30, 30)
	check(600, 60)
	check(2, 10)
	_, err := testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("ka3").SetKeepAlive(600 * time.Second) })
	if err == nil {
		t.Fatal("MQTT 3.1.1 client with keepalive above keepalive_max accepted")
	}
	if _, err := testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("ka3").SetKeepAlive(30 * time.Second) }); err != nil {
		t.Fatalf("MQTT 3.1.1 keepalive within bounds refused: %v", err)
	}
}

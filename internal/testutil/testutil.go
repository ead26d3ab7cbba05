// Package testutil starts real sockmq components on 127.0.0.1 with port 0
// and drives them with real MQTT clients (paho for MQTT 5 and 3.1.1). It is
// only imported by tests. Helpers fail the test through t and poll for
// conditions instead of sleeping.
package testutil

import (
	"context"
	"io"
	"log/slog"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/sockmq/sockmq/broker"
)

// MessageWait is how long the MQTT test clients' Next waits for a message
// before failing the test. Packages whose deliveries cross slower paths
// (the cluster tests: three nodes and three JetStream servers in one
// process under -race) raise it in their TestMain.
var MessageWait = 5 * time.Second

// WaitFor polls cond every few milliseconds until it is true or timeout
// passes, then fails the test with msg.
func WaitFor(t testing.TB, timeout time.Duration, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for: %s", timeout, msg)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Logger returns a logger for tests: quiet unless SOCKMQ_TEST_LOG=debug.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("SOCKMQ_TEST_LOG") == "debug" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// BrokerConfig is a broker configuration on 127.0.0.1 port 0 with its data
// in a fresh temporary directory.
func BrokerConfig(t testing.TB) broker.Config {
	cfg := broker.Defaults()
	cfg.Listeners.MQTT.Address = "127.0.0.1:0"
	cfg.Listeners.HTTP.Address = "127.0.0.1:0"
	cfg.Persistence.DataDir = t.TempDir()
	return cfg
}

// StartBroker starts a broker with cfg and shuts it down when the test ends.
func StartBroker(t testing.TB, cfg broker.Config, authz broker.Authorizer) *broker.Server {
	t.Helper()
	var a broker.Authorizer
	if authz != nil {
		a = authz
	}
	b, err := broker.New(cfg, a, nil, Logger(t))
	if err != nil {
		t.Fatalf("broker.New: %v", err)
	}
	if err := b.Start(); err != nil {
		t.Fatalf("broker.Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			buf := make([]byte, 1<<20)
			t.Errorf("broker.Shutdown: %v; goroutines:\n%s", err, buf[:runtime.Stack(buf, true)])
		}
	})
	return b
}

// WaitGone waits until the broker has finished with the connection of
// client id (its will, if any, has been handled): the session is no longer
// connected. A sentinel published afterwards then proves that a will that
// must not be sent was not.
func WaitGone(t testing.TB, b *broker.Server, id string) {
	t.Helper()
	// The broker reports a session ended after its will step.
	WaitFor(t, 5*time.Second, func() bool { return !b.Connected(id) }, "the broker to finish with client "+id)
}

package cluster_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/cluster/clustertest"
	"github.com/sockmq/sockmq/internal/testutil"
)

// Debian's nats-server (2.9.10) lacks per-key TTL: sockmq refuses it with
// a message that says why. Skipped where that binary is not installed
// (apt-get install nats-server).
func TestRefusesOldNATSServer(t *testing.T) {
	bin, err := exec.LookPath("nats-server")
	if err != nil {
		t.Skip("nats-server binary not installed")
	}
	out, _ := exec.Command(bin, "--version").Output()
	if !strings.Contains(string(out), "v2.9.") && !strings.Contains(string(out), "v2.10.") {
		t.Skipf("installed nats-server is %s, not an old one", strings.TrimSpace(string(out)))
	}
	addr := testutil.FreeAddr(t)
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(bin, "-a", host, "-p", port, "-js", "-sd", t.TempDir())
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	clustertest.Eventually(t, 10*time.Second, "nats-server to listen", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	})
	_, err = cluster.Start(context.Background(), cluster.Config{Name: "c", Node: "n1",
		NATS: &cluster.NATS{URLs: []string{"nats://" + addr}}, StartTimeout: 10 * time.Second}, clustertest.Logger())
	if !errors.Is(err, cluster.ErrRefused) || !strings.Contains(err.Error(), "is too old: sockmq needs nats-server 2.11.0 or newer") {
		t.Fatalf("start against %s: %v", strings.TrimSpace(string(out)), err)
	}
	t.Log(err)
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// `sockmq check` validates the cluster: section with key paths and lines,
// and says what would run.
func TestCheckClusterSection(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good.yaml", `
bridge:
  enabled: true
  auth_key: "0123456789abcdef0123"
cluster:
  name: prod
  node: n1
  embedded:
    listen: 127.0.0.1:6222
    routes: [nats://127.0.0.1:6222, nats://127.0.0.1:6223]
`)
	code, out, errb := cli("check", "-c", good)
	if code != 0 || !strings.Contains(out, "cluster prod, node n1: embedded NATS, routes on 127.0.0.1:6222") ||
		!strings.Contains(out, filepath.Join(dir, "data", "nats")) {
		t.Fatalf("check good cluster config: exit %d\nstdout: %s\nstderr: %s", code, out, errb)
	}
	bad := write("bad.yaml", `
bridge:
  enabled: true
cluster:
  name: prod
  node: n1
  embedded:
    listen: 0.0.0.0:6222
    routes: [nats://10.0.0.2:6222]
    rutes: []
`)
	code, _, errb = cli("check", "-c", bad)
	for _, want := range []string{
		"cluster.embedded.rutes: unknown key",
		"cluster.embedded.auth: required because embedded.listen 0.0.0.0:6222 is not a loopback address",
		"bridge.auth_key: required in cluster mode",
	} {
		if code != 1 || !strings.Contains(errb, want) {
			t.Errorf("check bad cluster config: exit %d, stderr lacks %q:\n%s", code, want, errb)
		}
	}
	if code, out, _ := cli("check"); code != 0 || !strings.Contains(out, "off (single node)") {
		t.Errorf("check without a cluster section: exit %d\n%s", code, out)
	}
}

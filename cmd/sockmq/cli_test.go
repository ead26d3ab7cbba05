package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// cli runs the command line in-process and returns its exit code and output.
func cli(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// Help asked for is the answer, not an error: it goes to stdout with exit 0
// for every command, so `sockmq serve --help | less` works.
func TestHelpGoesToStdout(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"-h"}, {"help"},
		{"serve", "--help"}, {"serve", "-h"}, {"help", "serve"},
		{"check", "--help"}, {"help", "check"},
		{"passwd", "--help"}, {"help", "passwd"},
		{"version", "--help"}, {"help", "version"},
	} {
		code, out, errb := cli(args...)
		if code != 0 || errb != "" || !strings.Contains(out, "Usage") {
			t.Errorf("sockmq %s: exit %d\nstdout: %q\nstderr: %q\nwant exit 0 and the usage on stdout only",
				strings.Join(args, " "), code, out, errb)
		}
	}
	// version --help explains the command rather than printing the version.
	if _, out, _ := cli("version", "--help"); strings.HasPrefix(out, "sockmq ") {
		t.Errorf("version --help printed the version: %q", out)
	}
}

func TestVersionFlag(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"-version"}, {"version"}} {
		code, out, errb := cli(args...)
		if code != 0 || out != "sockmq "+version+"\n" || errb != "" {
			t.Errorf("sockmq %s: exit %d stdout %q stderr %q, want \"sockmq %s\"", strings.Join(args, " "), code, out, errb, version)
		}
	}
	if code, _, errb := cli("version", "extra"); code != 2 || !strings.Contains(errb, "Usage") {
		t.Errorf("version extra: exit %d stderr %q, want a usage error", code, errb)
	}
}

// Usage errors still go to stderr with exit 2.
func TestUsageErrorsGoToStderr(t *testing.T) {
	for _, args := range [][]string{{"serve", "--nope"}, {"check", "--nope"}, {"frobnicate"}, {"--nope"}} {
		code, out, errb := cli(args...)
		if code != 2 || out != "" || !strings.Contains(errb, "Usage") {
			t.Errorf("sockmq %s: exit %d stdout %q stderr %q, want exit 2 and usage on stderr", strings.Join(args, " "), code, out, errb)
		}
	}
}

// `sockmq check` with no file checks what `sockmq` alone would run.
func TestCheckWithoutConfigChecksEmbeddedDefaults(t *testing.T) {
	code, out, errb := cli("check")
	if code != 0 || !strings.Contains(out, "ok") || !strings.Contains(out, "embedded defaults") {
		t.Fatalf("sockmq check: exit %d\nstdout: %q\nstderr: %q\nwant exit 0 and an ok for the embedded defaults", code, out, errb)
	}
	if code, out2, _ := cli("serve", "--check"); code != 0 || out2 != out {
		t.Errorf("sockmq serve --check: exit %d, output %q; want what sockmq check says", code, out2)
	}
}

// A port that is taken is the most common first-run failure: say what to
// do about it, not only the bind error.
func TestServeExplainsAPortInUse(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  mqtt: {address: %q}\n  http: {address: %q}\npersistence: {data_dir: data}\n", l.Addr().String(), freePort(t))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errb := cli("serve", "-c", path)
	if code != 1 || !strings.Contains(errb, "address already in use") || !strings.Contains(errb, "listeners.mqtt.address") || !strings.Contains(errb, "another") {
		t.Fatalf("exit %d, stderr:\n%s\nwant exit 1, the bind error and what to do (another process holds it; change listeners.mqtt.address)", code, errb)
	}
}

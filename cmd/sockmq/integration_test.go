package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// binary is the sockmq binary built once for the process-level tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sockmq-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "sockmq")
	if out, err := exec.Command("go", "build", "-race", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build sockmq: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string { return testutil.FreeAddr(t) }

// debugConfig is the configuration of the process-level tests: the addresses
// StartProc chose, the data in the test's directory, debug logs.
func debugConfig(mqttAddr, httpAddr, dataDir string) string {
	return strings.Replace(testutil.BaseConfig(mqttAddr, httpAddr, dataDir), "level: info", "level: debug", 1)
}

// startProc runs the race-enabled binary with debugConfig and waits for
// /healthz.
func startProc(t *testing.T) *testutil.Proc {
	t.Helper()
	return testutil.StartProc(t, testutil.ProcOptions{Binary: binary, Config: debugConfig})
}

func TestKillNineLeavesNoPresenceGhosts(t *testing.T) {
	p := startProc(t)
	viewer := testutil.MustConnect5(t, p.MQTT, "viewer-1")
	viewer.Sub(t, presence.ClientsFilter, 1)
	testutil.MustConnect5(t, p.MQTT, "ghost-1")
	testutil.WaitFor(t, 5*time.Second, func() bool {
		for {
			select {
			case m := <-viewer.Msgs:
				if m.Topic == presence.ClientTopic("ghost-1") {
					return true
				}
			default:
				return false
			}
		}
	}, "ghost-1 to appear in presence")

	p.Restart(t, syscall.SIGKILL)
	v2 := testutil.MustConnect5(t, p.MQTT, "viewer-2")
	v2.Sub(t, "sentinel", 1)
	v2.Sub(t, presence.ClientsFilter, 1)
	v2.Pub(t, "sentinel", 1, false, "end of the retained list")
	for {
		m := v2.Next(t)
		if m.Topic == "sentinel" {
			break
		}
		var s presence.Session
		_ = json.Unmarshal(m.Payload, &s)
		if s.ID != "viewer-2" && len(m.Payload) > 0 {
			t.Fatalf("after kill -9 and restart, presence still lists %s: %s", m.Topic, m.Payload)
		}
	}
}

func TestServeExitsCleanlyOnSIGTERM(t *testing.T) {
	p := startProc(t)
	c, _, err := testutil.Connect5(t, testutil.Dial(t, p.MQTT), &paho.Connect{ClientID: "c", CleanStart: true})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.Stop(t, syscall.SIGTERM)
	if !p.Cmd.ProcessState.Success() {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.Cmd.ProcessState, p.Output())
	}
	if d := time.Since(start); d > shutdownTimeout {
		t.Fatalf("shutdown took %v", d)
	}
	// A clean shutdown logs nothing at error level: operators alert on it.
	for _, line := range strings.Split(p.Output(), "\n") {
		if strings.Contains(line, "level=ERROR") {
			t.Errorf("clean shutdown logged an error: %s", line)
		}
	}
	select {
	case d := <-c.Disconnected:
		if d.ReasonCode != 0x8B {
			t.Fatalf("client got DISCONNECT 0x%x, want 0x8B", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client got no DISCONNECT")
	}
}

func TestCheckCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(testutil.BaseConfig(freePort(t), freePort(t), filepath.Join(dir, "data"))), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("listeners:\n  mqtt: {address: nope}\nlimits: {conect_timeout: 1s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run([]string{"check", "-c", good}, nil, &out, &errb); code != 0 {
		t.Fatalf("valid config: exit %d: %s", code, errb.String())
	}
	errb.Reset()
	if code := run([]string{"check", "-c", bad}, nil, &out, &errb); code != 1 {
		t.Fatalf("invalid config: exit %d, want 1", code)
	}
	if !strings.Contains(errb.String(), "conect_timeout") {
		t.Fatalf("check output does not name the unknown key: %s", errb.String())
	}
	errb.Reset()
	if err := os.WriteFile(bad, []byte("listeners:\n  mqtt: {address: nope}\n  http: {address: alsonope}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run([]string{"check", "-c", bad}, nil, &out, &errb)
	for _, key := range []string{"listeners.mqtt.address", "listeners.http.address"} {
		if !strings.Contains(errb.String(), key) {
			t.Errorf("check output lacks %s: %s", key, errb.String())
		}
	}
	for _, args := range [][]string{{"--help"}, {"serve", "--help"}, {"check", "--help"}, {"passwd", "--help"}, {"help"}, {"version"}} {
		out.Reset()
		errb.Reset()
		if code := run(args, nil, &out, &errb); code != 0 {
			t.Errorf("sockmq %v: exit %d", args, code)
		}
		if out.Len()+errb.Len() == 0 {
			t.Errorf("sockmq %v printed nothing", args)
		}
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}

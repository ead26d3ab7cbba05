package testutil

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// Binary builds cmd/sockmq once per test process, without -race, so that
// process-level measurements (RSS, round trips under a flood) describe the
// binary users run. It fails the test if the build fails.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		dir, err := os.MkdirTemp("", "sockmq-test-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(dir, "sockmq")
		cmd := exec.Command("go", "build", "-o", buildPath, "./cmd/sockmq")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/sockmq: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("not inside the sockmq module")
	}
	return filepath.Dir(mod), nil
}

// FreeAddr returns a free 127.0.0.1 address (listen on port 0, close).
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// ProcOptions describes a sockmq process to start.
type ProcOptions struct {
	// Config returns the YAML configuration given the addresses the
	// process must listen on and its data directory. Nil means a minimal
	// configuration with only those.
	Config func(mqttAddr, httpAddr, dataDir string) string
	// Args are extra arguments after `serve -c <config>`.
	Args []string
	// Binary is the executable; empty means [Binary].
	Binary string
	// Dir is the working and data directory; empty means a new t.TempDir().
	Dir string
	// SysProcAttr is applied to the process (for example a uid to run as).
	SysProcAttr *syscall.SysProcAttr
}

// Proc is a running sockmq process.
type Proc struct {
	Cmd        *exec.Cmd
	MQTT, HTTP string // listener addresses
	Dir        string // working directory holding config.yaml and data/
	ConfigPath string
	opts       ProcOptions
	out        *syncBuffer
	exited     chan struct{}
}

// BaseConfig is the minimal configuration for a process on the given
// addresses; callers append their own sections to it.
func BaseConfig(mqttAddr, httpAddr, dataDir string) string {
	return fmt.Sprintf("listeners:\n  mqtt: {address: %q}\n  http: {address: %q}\npersistence: {data_dir: %q}\nlogging: {level: info}\n",
		mqttAddr, httpAddr, dataDir)
}

// StartProc writes the configuration, starts `sockmq serve` and waits
// until /healthz answers. The process is killed when the test ends; its
// output is logged if the test failed.
func StartProc(t testing.TB, opts ProcOptions) *Proc {
	t.Helper()
	if opts.Binary == "" {
		opts.Binary = Binary(t)
	}
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	if opts.Config == nil {
		opts.Config = BaseConfig
	}
	p := &Proc{MQTT: FreeAddr(t), HTTP: FreeAddr(t), Dir: opts.Dir, opts: opts}
	p.ConfigPath = filepath.Join(opts.Dir, "config.yaml")
	cfg := opts.Config(p.MQTT, p.HTTP, filepath.Join(opts.Dir, "data"))
	if err := os.WriteFile(p.ConfigPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p.start(t)
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("sockmq output:\n%s", p.Output())
		}
	})
	return p
}

func (p *Proc) start(t testing.TB) {
	t.Helper()
	p.out = &syncBuffer{}
	p.Cmd = exec.Command(p.opts.Binary, append([]string{"serve", "-c", p.ConfigPath}, p.opts.Args...)...)
	p.Cmd.Dir = p.Dir
	p.Cmd.Stdout, p.Cmd.Stderr = p.out, p.out
	p.Cmd.SysProcAttr = p.opts.SysProcAttr
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start sockmq: %v", err)
	}
	exited := make(chan struct{})
	go func() { _ = p.Cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-exited:
			t.Fatalf("sockmq exited before answering /healthz:\n%s", p.Output())
		default:
		}
		if p.Healthy() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sockmq did not answer /healthz within 30s:\n%s", p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	p.exited = exited
}

// Healthy reports whether /healthz answers 200 right now.
func (p *Proc) Healthy() bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + p.HTTP + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Restart stops the process with signal sig (SIGTERM for a graceful stop,
// SIGKILL for a crash), waits for it to exit and starts it again on the
// same addresses, configuration and data directory.
func (p *Proc) Restart(t testing.TB, sig syscall.Signal) {
	t.Helper()
	p.Stop(t, sig)
	p.start(t)
}

// Stop sends sig and waits (up to 20s) for the process to exit.
func (p *Proc) Stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	_ = p.Cmd.Process.Signal(sig)
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		_ = p.Cmd.Process.Kill()
		<-p.exited
		t.Fatalf("sockmq did not exit within 20s of %v:\n%s", sig, p.Output())
	}
}

// Kill ends the process at once if it is still running.
func (p *Proc) Kill() {
	if p.Cmd == nil || p.Cmd.Process == nil {
		return
	}
	_ = p.Cmd.Process.Kill()
	if p.exited != nil {
		<-p.exited
	}
}

// Output returns what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// RSS returns the process's resident set size in bytes (VmRSS).
func (p *Proc) RSS(t testing.TB) int64 {
	t.Helper()
	return RSSOf(t, p.Cmd.Process.Pid)
}

// RSSOf returns the resident set size of process pid in bytes.
func RSSOf(t testing.TB, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("read RSS: %v", err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			kb, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatalf("parse VmRSS %q: %v", line, err)
			}
			return kb * 1024
		}
	}
	t.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 4<<20 {
		return len(p), nil // enough to diagnose; keep memory bounded
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// startTimeout bounds how long a broker may take to answer /healthz, and
// stopTimeout how long it may take to exit after a signal.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
)

// brokerConfig is the sockmq configuration of a round: loopback listeners,
// the round's data directory, and limits high enough that no message is
// dropped by a queue limit, so that every missing message is a durability
// failure. (The bridge is off: it plays no part in MQTT persistence.)
func brokerConfig(mqttAddr, httpAddr, dataDir string, sync bool) string {
	return fmt.Sprintf(`listeners:
  mqtt: {address: %q}
  http: {address: %q}
limits:
  max_queued_messages: 100000
  max_inflight: 65535
persistence:
  enabled: true
  data_dir: %q
  sync: %t
logging: {level: warn}
bridge: {enabled: false}
`, mqttAddr, httpAddr, dataDir, sync)
}

// broker runs one sockmq process at a time on a data directory. Every
// process is started in its own process group and also dies with the
// harness (Pdeathsig), so none is left behind.
type broker struct {
	bin  string
	dir  string // holds config.yaml, data/ and broker.log
	sync bool

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	mqtt   string
	http   string
	logf   *os.File
}

func newBroker(bin, dir string, sync bool) *broker {
	return &broker{bin: bin, dir: dir, sync: sync}
}

// start runs the broker on fresh loopback ports and waits until it
// answers /healthz. It retries on new ports if the process exits early
// (another program may take a free port between the check and the bind).
func (b *broker) start(ctx context.Context) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = b.startOnce(ctx); err == nil || ctx.Err() != nil {
			return err
		}
	}
	return err
}

func (b *broker) startOnce(ctx context.Context) error {
	mqttAddr, err := freeAddr()
	if err != nil {
		return err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(b.dir, "config.yaml")
	cfg := brokerConfig(mqttAddr, httpAddr, filepath.Join(b.dir, "data"), b.sync)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return fmt.Errorf("write broker config: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(b.dir, "broker.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open broker log: %w", err)
	}
	fmt.Fprintf(logf, "=== start %s\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(b.bin, "serve", "-c", cfgPath)
	cmd.Dir = b.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start %s: %w", b.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	b.mu.Lock()
	b.cmd, b.exited, b.mqtt, b.http, b.logf = cmd, exited, mqttAddr, httpAddr, logf
	b.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	for !healthy(httpAddr) {
		select {
		case <-exited:
			b.closeLog()
			return fmt.Errorf("sockmq exited before answering /healthz (%s): %s", cmd.ProcessState, b.logTail())
		case <-ctx.Done():
			b.kill()
			return ctx.Err()
		default:
		}
		if time.Now().After(deadline) {
			b.kill()
			return fmt.Errorf("sockmq did not answer /healthz within %v", startTimeout)
		}
		time.Sleep(10 * time.Millisecond) // poll interval of the readiness check
	}
	return nil
}

// addr is the MQTT listener of the running broker.
func (b *broker) addr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.mqtt
}

// signal sends sig to the running broker (not its group: a graceful stop
// must be the broker's own). It is safe to call from any goroutine.
func (b *broker) signal(sig syscall.Signal) {
	b.mu.Lock()
	cmd := b.cmd
	b.mu.Unlock()
	if cmd != nil && cmd.Process != nil {
		_ = cmd.Process.Signal(sig)
	}
}

// wait waits for the broker to exit after a signal. If it does not exit
// within stopTimeout it is killed and wait returns an error.
func (b *broker) wait() error {
	b.mu.Lock()
	exited := b.exited
	b.mu.Unlock()
	if exited == nil {
		return nil
	}
	select {
	case <-exited:
		b.closeLog()
		return nil
	case <-time.After(stopTimeout):
		b.kill()
		return fmt.Errorf("sockmq did not exit within %v of the signal", stopTimeout)
	}
}

// kill ends the broker's whole process group at once and waits for it.
// It is idempotent.
func (b *broker) kill() {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
	b.closeLog()
}

// exitStatus describes how the last process ended ("" while running).
func (b *broker) exitStatus() string {
	b.mu.Lock()
	cmd, exited := b.cmd, b.exited
	b.mu.Unlock()
	if cmd == nil {
		return ""
	}
	select {
	case <-exited: // Wait has set ProcessState
		return cmd.ProcessState.String()
	default:
		return ""
	}
}

func (b *broker) closeLog() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logf != nil {
		b.logf.Close()
		b.logf = nil
	}
}

// logTail returns the end of the broker's log on one line, for error
// messages.
func (b *broker) logTail() string {
	data, err := os.ReadFile(filepath.Join(b.dir, "broker.log"))
	if err != nil {
		return err.Error()
	}
	const max = 600
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return "log: " + strings.ReplaceAll(strings.TrimSpace(string(data)), "\n", " | ")
}

func healthy(httpAddr string) bool {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/healthz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// registry tracks the brokers that may be running, so that the watchdog
// can end them all.
type registry struct {
	mu  sync.Mutex
	set map[*broker]bool
}

func newRegistry() *registry { return &registry{set: make(map[*broker]bool)} }

func (r *registry) add(b *broker) {
	r.mu.Lock()
	r.set[b] = true
	r.mu.Unlock()
}

func (r *registry) remove(b *broker) {
	r.mu.Lock()
	delete(r.set, b)
	r.mu.Unlock()
}

func (r *registry) killAll() {
	r.mu.Lock()
	bs := make([]*broker, 0, len(r.set))
	for b := range r.set {
		bs = append(bs, b)
	}
	r.mu.Unlock()
	for _, b := range bs {
		b.kill()
	}
}

package testutil

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// clockTick is the unit of utime and stime in /proc/<pid>/stat (USER_HZ,
// 100 on every Linux platform Go supports).
const clockTick = 10 * time.Millisecond

// CPUTime returns the CPU time (user + system) the process has used so
// far, from /proc/<pid>/stat. Its resolution is 10ms: measure over enough
// work that this does not matter.
func (p *Proc) CPUTime(t testing.TB) time.Duration {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatalf("read CPU time: %v", err)
	}
	// The command name (field 2) is in parentheses and may contain spaces:
	// count fields after its closing parenthesis. utime and stime are
	// fields 14 and 15.
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		t.Fatalf("malformed /proc/%d/stat: %q", p.Cmd.Process.Pid, s)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/%d/stat: %v %v", p.Cmd.Process.Pid, err1, err2)
	}
	return time.Duration(utime+stime) * clockTick
}

// Metric returns the value of the Prometheus sample whose line starts with
// name (including its labels, e.g. `x_total{limit="y"}`) on /metrics, or
// -1 when there is none.
func (p *Proc) Metric(t testing.TB, name string) float64 {
	t.Helper()
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + p.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read /metrics: %v", err)
	}
	for _, line := range strings.Split(string(body), "\n") {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("parse %q: %v", line, err)
			}
			return v
		}
	}
	return -1
}

package app_test

import (
	"bufio"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// floodSockets is how many sockets the password-guessing flood uses.
const floodSockets = 20

// TestBridgeLoginFlood guesses passwords through the bridge's login
// procedure from 20 sockets of one address against the real (non-race)
// binary, and prints how many wrong passwords per second it got answered,
// the healthy MQTT client's round trip and the broker's RSS. Failed logins
// are answered after a growing delay per address and per socket, so the
// rate must stay at about one answer per socket per second or below (it
// was about 11,500 per second before).
func TestBridgeLoginFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("flood test")
	}
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "the-right-password", auth.DefaultIterations); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	p := testutil.StartProc(t, testutil.ProcOptions{Config: func(mqtt, httpAddr, data string) string {
		// Anonymous MQTT access on, so that the healthy client needs no
		// password; logins with a username are still verified.
		return testutil.BaseConfig(mqtt, httpAddr, data) + fmt.Sprintf("auth:\n  password_file: %q\n  allow_anonymous: true\n", pw)
	}})
	healthy := testutil.StartHealthy(t, p.MQTT, 0)
	rssBefore := p.RSS(t)
	url := testutil.SCURL(p.HTTP)

	// Patient guesser: each socket sends a login, waits for its answer,
	// sends the next; a closed socket is replaced.
	const window = 3 * time.Second
	var answered, closes atomic.Int64
	end := time.Now().Add(window)
	var wg sync.WaitGroup
	for range floodSockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				g, err := dialGuesser(url, end)
				if err != nil {
					continue
				}
				for g.guess() {
					answered.Add(1)
				}
				closes.Add(1)
				g.conn.Close()
			}
		}()
	}
	wg.Wait()
	rate := float64(answered.Load()) / window.Seconds()
	t.Logf("patient guessing, %d sockets for %v: %d wrong passwords answered = %.1f/s (%d sockets closed or ended)",
		floodSockets, window, answered.Load(), rate, closes.Load())

	// Impatient guesser: a fresh socket per guess, abandoned if the answer
	// does not come within 30ms (a correct password is answered at once).
	// Only the connection rate bounds it: see bridge/README.md.
	verifiedBefore := metricValue(t, p.HTTP, "sockmq_bridge_login_failures_total")
	var sent atomic.Int64
	const churnWindow = 2 * time.Second
	end = time.Now().Add(churnWindow)
	for range floodSockets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				g, err := dialGuesser(url, end)
				if err != nil {
					continue
				}
				_ = g.conn.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
				if g.send() {
					sent.Add(1)
					g.guessAnswered()
				}
				g.conn.Close()
			}
		}()
	}
	wg.Wait()
	verified := "n/a"
	if v := metricValue(t, p.HTTP, "sockmq_bridge_login_failures_total"); v >= 0 && verifiedBefore >= 0 {
		verified = fmt.Sprintf("%.0f/s", (v-verifiedBefore)/churnWindow.Seconds())
	}
	t.Logf("impatient guessing (new socket per guess), %d workers for %v: %.0f guesses sent/s, %s verified per /metrics",
		floodSockets, churnWindow, float64(sent.Load())/churnWindow.Seconds(), verified)

	t.Log(healthy.Check(t))
	t.Logf("broker RSS: %.1f MiB before the flood, %.1f MiB after", float64(rssBefore)/(1<<20), float64(p.RSS(t))/(1<<20))
	if rate > floodSockets {
		t.Fatalf("%.1f wrong passwords per second answered from %d sockets: failed logins are not slowed down", rate, floodSockets)
	}
}

// guesser is a raw SocketCluster socket that tries wrong passwords.
type guesser struct {
	conn *websocket.Conn
	cid  int64
}

func dialGuesser(url string, end time.Time) (*guesser, error) {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	conn, _, err := d.Dial(url, nil)
	if err != nil {
		return nil, err
	}
	_ = conn.SetReadDeadline(end)
	g := &guesser{conn: conn, cid: 1}
	if err := conn.WriteMessage(websocket.TextMessage, []byte(`{"event":"#handshake","data":{"authToken":null},"cid":1}`)); err != nil {
		conn.Close()
		return nil, err
	}
	if !g.guessAnswered() {
		conn.Close()
		return nil, fmt.Errorf("no handshake reply")
	}
	return g, nil
}

// send sends the next wrong password.
func (g *guesser) send() bool {
	g.cid++
	msg := fmt.Sprintf(`{"event":"login","data":{"username":"alice","password":"guess-%d"},"cid":%d}`, g.cid, g.cid)
	return g.conn.WriteMessage(websocket.TextMessage, []byte(msg)) == nil
}

// guess sends a wrong password and waits for its answer; false when the
// socket closed or the time is up.
func (g *guesser) guess() bool { return g.send() && g.guessAnswered() }

// guessAnswered reads until the answer to the last request, answering
// pings; false when the socket closed or its read deadline passed.
func (g *guesser) guessAnswered() bool {
	for {
		_, b, err := g.conn.ReadMessage()
		if err != nil {
			return false
		}
		f := scproto.Decode(b)
		switch f.Kind {
		case scproto.KindEmpty:
			_ = g.conn.WriteMessage(websocket.TextMessage, nil)
		case scproto.KindPingV1:
			_ = g.conn.WriteMessage(websocket.TextMessage, []byte("#2"))
		case scproto.KindPackets:
			for _, p := range f.Packets {
				if p.HasRID && p.RID == g.cid {
					return true
				}
			}
		}
	}
}

// metricValue reads an unlabelled metric from /metrics; -1 when absent.
func metricValue(t *testing.T, httpAddr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

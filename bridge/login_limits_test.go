package bridge_test

import (
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// With anonymous access off, a socket must log in within
// bridge.login_timeout or be closed with a code >= 4500 (stock clients do
// not reconnect); until then it is no session (observers are not told).
// A logout ends its session and restarts the timeout.
func TestLoginTimeout(t *testing.T) {
	cfg := testConfig()
	cfg.LoginTimeout = 500 * time.Millisecond
	st, _ := authStack(t, cfg)

	anon := st.dial(t)
	anonID, _ := anon.Handshake(nil)["id"].(string)
	user := st.dial(t)
	userID, _ := user.Handshake(nil)["id"].(string)
	user.Login("alice", users["alice"])

	code, reason := anon.WaitClose()
	if code != bridge.CloseLoginTimeout || code < 4500 || !strings.Contains(strings.ToLower(reason), "login") {
		t.Fatalf("anonymous socket closed with %d %q, want %d (>= 4500) naming the login timeout", code, reason, bridge.CloseLoginTimeout)
	}
	if st.obs.everOpened(anonID) {
		t.Error("the observer was told about a socket that never logged in")
	}
	if !st.obs.everOpened(userID) {
		t.Fatal("the logged-in socket is not a session")
	}
	// A socket connected after the login: once it has timed out, the
	// logged-in socket (older) is past its own timeout and must be open.
	late := st.connect(t)
	if code, _ := late.WaitClose(); code != bridge.CloseLoginTimeout {
		t.Fatalf("second anonymous socket closed with %d", code)
	}
	if user.Closed() {
		t.Fatal("a logged-in socket was closed by the login timeout")
	}
	user.Subscribe("alice/x")

	// logout: the session ends (still open, clean), the timeout restarts.
	if r := user.Invoke("logout", nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	testutil.WaitFor(t, 5*time.Second, func() bool { _, ok := st.obs.closeOf(userID); return ok }, "session end after logout")
	if info, _ := st.obs.closeOf(userID); !info.Open || !info.Clean {
		t.Errorf("session end after logout reported as %+v, want Open and Clean", info)
	}
	if code, _ := user.WaitClose(); code != bridge.CloseLoginTimeout {
		t.Fatalf("logged-out socket closed with %d, want %d", code, bridge.CloseLoginTimeout)
	}
	if n := st.metricWith("sockmq_limit_refusals_total", "limit", "bridge_login_timeout"); n != 3 {
		t.Errorf("sockmq_limit_refusals_total{limit=bridge_login_timeout} = %v, want 3", n)
	}
}

// Failed logins are answered after a growing delay (per address, shared
// through limit.LoginGuard, and per socket); a socket that waits out a
// delay handles nothing else; the socket is closed after
// bridge.max_failed_logins; a correct password, on another socket of the
// same address, is answered at once.
func TestFailedLoginsSlowedAndClosed(t *testing.T) {
	cfg := testConfig()
	cfg.MaxFailedLogins = 4
	const base = 600 * time.Millisecond
	guard := limit.NewLoginGuard(limit.LoginGuardConfig{Free: 2, Base: base, Max: 2 * base})
	dir := t.TempDir()
	st := authStackOpts(t, cfg, dir, func(o *bridge.Options) { o.LoginGuard = guard })

	a := st.connect(t)
	wrong := map[string]string{"username": "alice", "password": "guess"}
	for i := 1; i <= 2; i++ {
		start := time.Now()
		r := a.Invoke("login", wrong)
		if testutil.ErrName(r) != bridge.ErrNameLogin {
			t.Fatalf("failure %d answered %s", i, r.Error)
		}
		if d := time.Since(start); d >= base {
			t.Errorf("free failure %d answered after %v, want no delay", i, d)
		}
	}

	// Third failure: delayed.
	start := time.Now()
	cid := a.Call("login", wrong)
	answered := func(p scproto.Packet) bool { return p.HasRID && p.RID == cid }
	// Meanwhile this socket handles nothing else, not even a correct
	// password (it is not verified)...
	r := a.Invoke("login", map[string]string{"username": "alice", "password": users["alice"]})
	if testutil.ErrName(r) != bridge.ErrNameLoginPending {
		t.Fatalf("login during the delay answered %s %s, want %s", r.Data, r.Error, bridge.ErrNameLoginPending)
	}
	if r := a.Invoke("#subscribe", `{"channel":"public/x"}`); testutil.ErrName(r) != bridge.ErrNameLoginPending {
		t.Fatalf("subscribe during the delay answered %s", r.Error)
	}
	// ...while another socket of the same address logs in at once.
	b := st.connect(t)
	b.Login("alice", users["alice"])
	if a.Count(answered) != 0 {
		t.Fatal("the delayed failure was answered before a correct login on another socket")
	}
	p := a.Next(answered, "the delayed failure")
	if testutil.ErrName(p) != bridge.ErrNameLogin {
		t.Fatalf("third failure answered %s", p.Error)
	}
	if d := time.Since(start); d < base {
		t.Fatalf("third failure answered after %v, want >= %v", d, base)
	}
	if c := a.Count(testutil.IsEvent("#setAuthToken")); c != 0 {
		t.Fatal("a login sent during the delay was verified")
	}

	// Fourth failure (max_failed_logins): answered, then the socket closes.
	start = time.Now()
	if r := a.Invoke("login", wrong); testutil.ErrName(r) != bridge.ErrNameLogin {
		t.Fatalf("fourth failure answered %s", r.Error)
	}
	if d := time.Since(start); d < base {
		t.Errorf("fourth failure answered after %v, want >= %v", d, base)
	}
	if code, reason := a.WaitClose(); code != bridge.CloseTooManyFailedLogins || code < 4500 {
		t.Fatalf("closed with %d %q, want %d", code, reason, bridge.CloseTooManyFailedLogins)
	}
	if n := st.metric("sockmq_bridge_login_failures_total"); n != 4 {
		t.Errorf("sockmq_bridge_login_failures_total = %v, want 4", n)
	}
	if n := st.metric("sockmq_bridge_login_delayed_total"); n != 2 {
		t.Errorf("sockmq_bridge_login_delayed_total = %v, want 2", n)
	}
	if n := st.metricWith("sockmq_limit_refusals_total", "limit", "bridge_max_failed_logins"); n != 1 {
		t.Errorf("sockmq_limit_refusals_total{limit=bridge_max_failed_logins} = %v, want 1", n)
	}
	// A new socket from the address still logs in at once with the right
	// password: no per-user lockout.
	st.connect(t).Login("alice", users["alice"])
}

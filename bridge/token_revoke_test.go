package bridge_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// pwFile edits the password file of an authStack one user at a time:
// entries of users it does not touch keep their hash (and salt).
type pwFile struct {
	t     *testing.T
	st    *stack
	dir   string
	lines map[string]string
}

func newPWFile(t *testing.T, st *stack, dir string) *pwFile {
	f := &pwFile{t: t, st: st, dir: dir, lines: map[string]string{}}
	for u, pw := range users {
		f.set(u, pw)
	}
	f.save()
	return f
}

func (f *pwFile) set(user, pw string) {
	h, err := auth.HashPassword(pw, 1)
	if err != nil {
		f.t.Fatal(err)
	}
	f.lines[user] = user + ":" + h
}

// save writes the file and reloads the auth service (the SIGHUP path).
func (f *pwFile) save() {
	f.t.Helper()
	var ls []string
	for _, l := range f.lines {
		ls = append(ls, l)
	}
	sort.Strings(ls)
	writeFile(f.t, f.dir, "passwd", strings.Join(ls, "\n")+"\n")
	if err := f.st.auth.Reload(); err != nil {
		f.t.Fatal(err)
	}
}

// tokenRefused checks that tok is refused at handshake and by
// #authenticate, with AuthTokenInvalidError and #removeAuthToken.
func tokenRefused(t *testing.T, st *stack, tok, what string) {
	t.Helper()
	c := st.dial(t)
	hs := c.Handshake(&tok)
	ae, _ := hs["authError"].(map[string]any)
	if hs["isAuthenticated"] != false || ae == nil || ae["name"] != bridge.ErrNameTokenInvalid || ae["isBadToken"] != true {
		t.Fatalf("%s: handshake with the token answered %v", what, hs)
	}
	c.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken after a refused token ("+what+")")
	if r := c.Invoke("#authenticate", testutil.Quote(tok)); testutil.ErrName(r) != bridge.ErrNameTokenInvalid {
		t.Fatalf("%s: #authenticate answered %s %s", what, r.Data, r.Error)
	}
	t.Logf("%s: %v", what, ae["message"])
}

// tokenAccepted checks that a new socket is authenticated by tok.
func tokenAccepted(t *testing.T, st *stack, tok, what string) *scClient {
	t.Helper()
	c := st.dial(t)
	if hs := c.Handshake(&tok); hs["isAuthenticated"] != true {
		t.Fatalf("%s: handshake with the token answered %v", what, hs)
	}
	return c
}

// deauthenticated waits for #removeAuthToken and the #kickOut from channel.
func deauthenticated(t *testing.T, c *scClient, channel, what string) {
	t.Helper()
	c.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken: "+what)
	c.Next(func(p scproto.Packet) bool {
		return p.Event == "#kickOut" && strings.Contains(string(p.Data), `"channel":"`+channel+`"`)
	}, "#kickOut of "+channel+": "+what)
	if r := c.Invoke("#subscribe", `{"channel":"`+channel+`"}`); testutil.ErrName(r) != bridge.ErrNameAuth {
		t.Fatalf("%s: subscribe after deauthentication answered %s", what, r.Error)
	}
}

// A token is bound to its user's password-file entry: a password change,
// a deletion, and a deletion followed by re-creation (same password) all
// end it, on live sockets (at the reload) and at the next handshake.
func TestTokensFollowThePasswordFile(t *testing.T) {
	st, dir := authStack(t, testConfig())
	pf := newPWFile(t, st, dir)

	login := st.connect(t)
	tok := login.Login("alice", users["alice"])
	live := tokenAccepted(t, st, tok, "fresh token")
	live.Subscribe("alice/inbox")
	bob := st.connect(t)
	bobTok := bob.Login("bob", users["bob"])
	bob.Subscribe("news/a")

	// Password change.
	pf.set("alice", "alice-new-pw")
	pf.save()
	deauthenticated(t, live, "alice/inbox", "live socket after alice's password change")
	login.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken on the socket that logged in")
	tokenRefused(t, st, tok, "token issued before the password change")
	// Other users are untouched.
	tokenAccepted(t, st, bobTok, "bob's token after alice's password change")
	if n := bob.Count(testutil.IsEvent("#removeAuthToken")); n != 0 {
		t.Fatalf("bob's socket was deauthenticated by alice's password change")
	}

	// Delete and re-create with the same password: the old token stays dead.
	tok2 := st.connect(t).Login("alice", "alice-new-pw")
	live2 := tokenAccepted(t, st, tok2, "token after the password change")
	live2.Subscribe("alice/inbox")
	delete(pf.lines, "alice")
	pf.save()
	deauthenticated(t, live2, "alice/inbox", "live socket after alice's deletion")
	pf.set("alice", "alice-new-pw")
	pf.save()
	tokenRefused(t, st, tok2, "token of a deleted then re-created user")
	tokenAccepted(t, st, st.connect(t).Login("alice", "alice-new-pw"), "token of the re-created user")
}

// A token without exp is refused, even correctly signed for a valid user.
func TestTokenWithoutExpiryRefused(t *testing.T) {
	st, _ := authStack(t, testConfig())
	now := time.Now().Unix()
	tokenAccepted(t, st, st.h.SignTokenForTest("alice", now, now+60), "token with exp")
	tokenRefused(t, st, st.h.SignTokenForTest("alice", now, 0), "token without exp")
}

// logout revokes the socket's token until it expires: other sockets using
// it are deauthenticated, new sockets refuse it, and a restart on the same
// data directory does not bring it back. The client's own deauthenticate()
// (#removeAuthToken) revokes too.
func TestLogoutRevokesTheToken(t *testing.T) {
	cfg := testConfig()
	st, _ := authStack(t, cfg)

	a := st.connect(t)
	tok := a.Login("alice", users["alice"])
	twin := tokenAccepted(t, st, tok, "same token in another tab")
	twin.Subscribe("alice/inbox")
	other := st.connect(t)
	otherTok := other.Login("alice", users["alice"])

	if r := a.Invoke("logout", nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	a.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken after logout")
	deauthenticated(t, twin, "alice/inbox", "other socket holding the logged-out token")
	tokenRefused(t, st, tok, "logged-out token")
	// alice's other login is another token: untouched.
	otherTwin := tokenAccepted(t, st, otherTok, "alice's other token")
	otherTwin.Subscribe("alice/inbox")

	// deauthenticate() in the client: #removeAuthToken from the socket.
	other.Transmit("#removeAuthToken", "null")
	deauthenticated(t, otherTwin, "alice/inbox", "socket holding a token its owner dropped")
	tokenRefused(t, st, otherTok, "token dropped by the client")

	// A restart: a new bridge on the same data directory.
	f := filepath.Join(st.dir, bridge.RevokedTokensFile)
	fi, err := os.Stat(f)
	if err != nil {
		t.Fatalf("revocation list not persisted: %v", err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("%s mode %v, want 0600", f, fi.Mode().Perm())
	}
	cfg.AuthKey = testAuthKey
	st2 := startStackOpts(t, cfg, st.auth, func(o *bridge.Options) { o.DataDir = st.dir })
	tokenRefused(t, st2, tok, "logged-out token after a restart")
	tokenRefused(t, st2, otherTok, "dropped token after a restart")
	tokenAccepted(t, st2, st2.connect(t).Login("alice", users["alice"]), "a new login after the restart")
}

// Without a data directory revocations are kept in memory.
func TestLogoutRevokesWithoutDataDir(t *testing.T) {
	dir := t.TempDir()
	no := false
	svc, err := auth.New(auth.Config{PasswordFile: writeFile(t, dir, "passwd", passwd(t, users)), AllowAnonymous: &no}, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := startStackOpts(t, testConfig(), svc, func(o *bridge.Options) { o.DataDir = "" })
	a := st.connect(t)
	tok := a.Login("alice", users["alice"])
	if r := a.Invoke("logout", nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	tokenRefused(t, st, tok, "logged-out token, no data directory")
}

package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newPasswd(t testing.TB, dir string, users map[string]string) string {
	t.Helper()
	var pf PasswordFile
	for u, p := range users {
		if _, err := pf.Set(u, p, 0); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "passwd")
	if err := pf.Save(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func ptr(b bool) *bool { return &b }

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAuthenticate(t *testing.T) {
	dir := t.TempDir()
	pw := newPasswd(t, dir, map[string]string{"alice": "secret"})
	tests := []struct {
		name          string
		cfg           Config
		user, pass    string
		hasU, hasP    bool
		want          Result
		wantAnonAllow bool
	}{
		{"open anon", Config{}, "", "", false, false, Allowed, true},
		{"open any user", Config{}, "who", "x", true, true, Allowed, true},
		{"open off anon", Config{AllowAnonymous: ptr(false)}, "", "", false, false, NotAuthorized, false},
		{"open off user", Config{AllowAnonymous: ptr(false)}, "who", "x", true, true, NotAuthorized, false},
		{"pw anon default off", Config{PasswordFile: pw}, "", "", false, false, NotAuthorized, false},
		{"pw anon on", Config{PasswordFile: pw, AllowAnonymous: ptr(true)}, "", "", false, false, Allowed, true},
		{"pw right", Config{PasswordFile: pw}, "alice", "secret", true, true, Allowed, false},
		{"pw wrong", Config{PasswordFile: pw}, "alice", "nope", true, true, BadCredentials, false},
		{"pw unknown", Config{PasswordFile: pw}, "mallory", "secret", true, true, BadCredentials, false},
		{"pw no password", Config{PasswordFile: pw}, "alice", "", true, false, BadCredentials, false},
		{"pw user must auth even if anon on", Config{PasswordFile: pw, AllowAnonymous: ptr(true)}, "alice", "bad", true, true, BadCredentials, true},
	}
	for _, tt := range tests {
		s, err := New(tt.cfg, nil)
		if err != nil {
			t.Fatalf("%s: New: %v", tt.name, err)
		}
		if got := s.Authenticate(tt.user, []byte(tt.pass), tt.hasU, tt.hasP); got != tt.want {
			t.Errorf("%s: Authenticate = %v, want %v", tt.name, got, tt.want)
		}
		if s.AnonymousAllowed() != tt.wantAnonAllow {
			t.Errorf("%s: AnonymousAllowed = %v", tt.name, s.AnonymousAllowed())
		}
	}
}

func TestAuthenticateCache(t *testing.T) {
	dir := t.TempDir()
	pw := newPasswd(t, dir, map[string]string{"alice": "secret"})
	s, err := New(Config{PasswordFile: pw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn := s.cur.Load()
	if s.Authenticate("alice", []byte("wrong"), true, true) != BadCredentials || sn.cache.len() != 0 {
		t.Fatal("failed login cached")
	}
	for range 3 {
		if s.Authenticate("alice", []byte("secret"), true, true) != Allowed {
			t.Fatal("login failed")
		}
	}
	if sn.cache.len() != 1 {
		t.Fatalf("cache len = %d, want 1", sn.cache.len())
	}
	// Change alice's password: after reload the old password must fail.
	newPasswd(t, dir, map[string]string{"alice": "changed"})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if s.Authenticate("alice", []byte("secret"), true, true) != BadCredentials {
		t.Error("old password still accepted after reload")
	}
	if s.Authenticate("alice", []byte("changed"), true, true) != Allowed {
		t.Error("new password refused")
	}
	// The digest depends on the hash string, user and password.
	c := newCredCache([]byte("k"))
	d1 := c.digest("ab", []byte("c"), "h")
	d2 := c.digest("a", []byte("bc"), "h")
	d3 := c.digest("ab", []byte("c"), "h2")
	if d1 == d2 || d1 == d3 {
		t.Error("digest fields run together")
	}
	for i := range maxCacheEntries + 10 {
		c.add(c.digest("u", []byte(strconv.Itoa(i)), "h"))
	}
	if c.len() > maxCacheEntries {
		t.Errorf("cache grew to %d", c.len())
	}
}

func TestUnknownUserUsesCommonIterations(t *testing.T) {
	var pf PasswordFile
	pf.Set("a", "x", 500)
	pf.Set("b", "x", 500)
	pf.Set("c", "x", 101)
	path := filepath.Join(t.TempDir(), "p")
	pf.Save(path)
	s, err := New(Config{PasswordFile: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.cur.Load().fake.iter; got != 500 {
		t.Errorf("fake hash iterations = %d, want 500", got)
	}
	six := map[string]*pwHash{}
	for _, u := range []string{"a", "b"} {
		six[u], _ = parseHash(hashSHA512("x"))
	}
	if f := fakeFor(six, 101); f.kind != kindSHA512 || f.verify([]byte("x")) {
		t.Errorf("fake for a $6$ file: kind %v", f.kind)
	}
	bc := map[string]*pwHash{"a": {kind: kindBcrypt, raw: "$2a$05$" + strings.Repeat("a", 53)}}
	if f := fakeFor(bc, 101); f.kind != kindBcrypt {
		t.Errorf("fake for a bcrypt file: kind %v", f.kind)
	} else if c, _ := bcrypt.Cost([]byte(f.raw)); c != 5 {
		t.Errorf("fake bcrypt cost %d, want 5", c)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	plain := filepath.Join(dir, "plain")
	writeFile(t, plain, "# c\nalice:hunter2\n")
	badACL := filepath.Join(dir, "acl")
	writeFile(t, badACL, "topic read a\nfoo bar\n")
	err := Config{PasswordFile: filepath.Join(dir, "missing"), ACLFile: badACL}.Validate()
	if err == nil {
		t.Fatal("Validate passed")
	}
	msg := err.Error()
	for _, want := range []string{"auth.password_file: open " + filepath.Join(dir, "missing"), "auth.acl_file: " + badACL + ": line 2: unknown keyword"} {
		if !strings.Contains(msg, want) {
			t.Errorf("Validate error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Error("errors.Is(err, os.ErrNotExist) = false")
	}
	err = Config{PasswordFile: plain}.Validate()
	if err == nil || !strings.Contains(err.Error(), "auth.password_file: "+plain+": line 2: user \"alice\" has a plain-text password; hash it with: sockmq passwd -U "+plain) {
		t.Errorf("plain-text file: %v", err)
	}
	if _, err := New(Config{PasswordFile: plain}, nil); err == nil {
		t.Error("New accepted a plain-text password file")
	}
	if err := (Config{}).Validate(); err != nil {
		t.Errorf("zero Config: %v", err)
	}
}

func TestServiceNoACL(t *testing.T) {
	s, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := Identity{Anonymous: true}
	if !s.Allowed(id, "any/topic", Write) || s.Subscription(id, "#") != SubAllow || s.Subscription(id, "a/#/b") != SubDeny {
		t.Error("no-ACL service is not open")
	}
	if !s.UserExists("anyone") {
		t.Error("UserExists without password file")
	}
}

func TestReloadAndWatch(t *testing.T) {
	dir := t.TempDir()
	pw := newPasswd(t, dir, map[string]string{"alice": "secret", "bob": "pw"})
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user alice\ntopic read a/#\n")
	s, err := New(Config{PasswordFile: pw, ACLFile: acl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice := Identity{Username: "alice", ClientID: "c"}
	var reloads atomic.Int32
	s.OnReload(func() { reloads.Add(1) })

	// A broken ACL keeps the previous rules and reports the line.
	writeFile(t, acl, "user alice\ntopic read b/#\nnonsense\n")
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("Reload = %v, want line 3 error", err)
	}
	if !s.Allowed(alice, "a/x", Read) || s.Allowed(alice, "b/x", Read) || reloads.Load() != 0 {
		t.Fatal("failed reload changed the rules or ran callbacks")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, 10*time.Millisecond); close(done) }()

	writeFile(t, acl, "user alice\ntopic read b/#\n")
	waitFor(t, 5*time.Second, func() bool { return s.Allowed(alice, "b/x", Read) })
	if s.Allowed(alice, "a/x", Read) {
		t.Error("old rule survived reload")
	}
	waitFor(t, 5*time.Second, func() bool { return reloads.Load() == 1 })

	if !s.UserExists("bob") {
		t.Fatal("bob missing")
	}
	newPasswd(t, dir, map[string]string{"alice": "secret"})
	waitFor(t, 5*time.Second, func() bool { return !s.UserExists("bob") })
	waitFor(t, 5*time.Second, func() bool { return reloads.Load() == 2 })

	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after cancel")
	}
}

func TestConcurrentChecksDuringReload(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	writeFile(t, acl, "user u\ntopic read a/#\n")
	s, err := New(Config{ACLFile: acl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		id := Identity{Username: "u"}
		for {
			select {
			case <-stop:
				return
			default:
				s.Allowed(id, "a/b", Read)
				s.Subscription(id, "a/+")
			}
		}
	}()
	for range 20 {
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	<-done
}

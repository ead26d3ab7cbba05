package auth

import (
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// rewriteInPlace does what an editor saving in place does: it truncates
// path and writes content back in chunks spread over about d.
func rewriteInPlace(t *testing.T, path, content string, chunks int, d time.Duration) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := (len(content) + chunks - 1) / chunks
	pace := time.NewTicker(d / time.Duration(chunks))
	defer pace.Stop()
	for rest := content; rest != ""; {
		<-pace.C // the writer's own pace, not a wait for the broker
		n := min(size, len(rest))
		if _, err := f.WriteString(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
}

// A file read while it is being written (truncated, then rewritten in
// small chunks) must never be loaded: an empty or partial ACL means "deny
// everything" and a partial password file drops users, and the revocation
// that follows a reload would then remove subscriptions and sessions for
// good. Only the settled content is loaded, and it is loaded.
func TestWatchWaitsForFilesToSettle(t *testing.T) {
	dir := t.TempDir()
	pw := newPasswd(t, dir, map[string]string{"alice": "secret", "bob": "pw"})
	acl := dir + "/acl"
	const oldACL = "# rules\nuser alice\ntopic read a/#\n\nuser bob\ntopic read c/#\n"
	writeFile(t, acl, oldACL)
	s, err := New(Config{PasswordFile: pw, ACLFile: acl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	alice, bob := Identity{Username: "alice", ClientID: "a"}, Identity{Username: "bob", ClientID: "b"}

	var mu sync.Mutex
	var bad []string
	reloads := 0
	s.OnReload(func() {
		mu.Lock()
		defer mu.Unlock()
		reloads++
		if !s.Allowed(alice, "a/x", Read) || !s.Allowed(bob, "c/x", Read) || !s.UserExists("alice") || !s.UserExists("bob") {
			bad = append(bad, "a reload lost rules or users that every complete version of the files has")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, 50*time.Millisecond); close(done) }()
	defer func() { cancel(); <-done }()

	newACL := strings.Replace(oldACL, "topic read a/#\n", "topic read a/#\ntopic read b/#\n", 1)
	rewriteInPlace(t, acl, newACL, 25, time.Second)
	waitFor(t, 5*time.Second, func() bool { return s.Allowed(alice, "b/x", Read) })

	pwData, err := os.ReadFile(pw)
	if err != nil {
		t.Fatal(err)
	}
	carol := newPasswd(t, t.TempDir(), map[string]string{"carol": "c"})
	carolLine, err := os.ReadFile(carol)
	if err != nil {
		t.Fatal(err)
	}
	rewriteInPlace(t, pw, string(pwData)+string(carolLine), 25, time.Second)
	waitFor(t, 5*time.Second, func() bool { return s.UserExists("carol") })

	mu.Lock()
	defer mu.Unlock()
	if len(bad) > 0 {
		t.Fatalf("%d of %d reloads loaded a half-written file: %s", len(bad), reloads, bad[0])
	}
	if reloads != 2 {
		t.Errorf("%d reloads, want 2 (one per settled change)", reloads)
	}
}

// With the interval the process uses (1s), a real change still takes
// effect within 3 seconds.
func TestWatchAppliesASettledChangeWithin3s(t *testing.T) {
	dir := t.TempDir()
	acl := dir + "/acl"
	writeFile(t, acl, "user alice\ntopic read a/#\n")
	s, err := New(Config{ACLFile: acl}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Watch(ctx, time.Second); close(done) }()
	defer func() { cancel(); <-done }()

	alice := Identity{Username: "alice", ClientID: "a"}
	start := time.Now()
	writeFile(t, acl, "user alice\ntopic read b/#\n")
	waitFor(t, 5*time.Second, func() bool { return s.Allowed(alice, "b/x", Read) })
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("the change took effect after %v, want within 3s", d)
	}
	t.Logf("change applied after %v", time.Since(start).Round(time.Millisecond))
}

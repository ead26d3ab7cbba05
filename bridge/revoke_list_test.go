package bridge

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The list persists revocations across a reopen, skips expired entries and
// a line torn by a crash, stays within its bound (forgetting the entries
// that expire soonest, and saying so), and keeps its file compact.
func TestRevocationListBoundedAndDurable(t *testing.T) {
	dir := t.TempDir()
	dropped := 0
	l, err := openRevocationList(dir, 10, func(n int) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	var notified []string
	l.OnRevoke(func(jti string) { notified = append(notified, jti) })
	now := time.Now().Unix()
	if err := l.Revoke("soon", now+100); err != nil {
		t.Fatal(err)
	}
	if err := l.Revoke("late", now+10000); err != nil {
		t.Fatal(err)
	}
	if !l.Revoked("soon") || !l.Revoked("late") || l.Revoked("other") {
		t.Fatal("Revoked disagrees with Revoke")
	}
	if len(notified) != 2 {
		t.Fatalf("OnRevoke callbacks: %v", notified)
	}
	l.Close()

	// A crash mid-append leaves a torn line; an expired entry is dropped.
	path := filepath.Join(dir, RevokedTokensFile)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "%d expired\n%d torn", now-1, now+500)
	f.Close()
	l, err = openRevocationList(dir, 10, func(n int) { dropped += n })
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if !l.Revoked("soon") || !l.Revoked("late") || l.Revoked("expired") || l.Revoked("torn") {
		t.Fatalf("after reopen: %v", l.m)
	}

	// Past the bound the soonest-expiring entries go, and the drop is
	// reported; "late" expires last and stays.
	for i := range 30 {
		if err := l.Revoke(fmt.Sprintf("t%02d", i), now+1000+int64(i)); err != nil {
			t.Fatal(err)
		}
	}
	if len(l.m) > 10 || dropped == 0 || !l.Revoked("late") || l.Revoked("soon") || !l.Revoked("t29") {
		t.Fatalf("bounded list holds %d entries (dropped %d): %v", len(l.m), dropped, l.m)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if lines := strings.Count(string(data), "\n"); lines > 2*10+1024+1 {
		t.Fatalf("file grew to %d lines", lines)
	}
}

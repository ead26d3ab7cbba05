package auth

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// The credential stamp changes with the user's entry (new password, delete
// and re-create) and with nothing else, and never contains the hash.
func TestCredentialStamp(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	pf, err := LoadPasswordFile(newPasswd(t, dir, map[string]string{"alice": "a", "bob": "b"}))
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Config{PasswordFile: path}, nil)
	if err != nil {
		t.Fatal(err)
	}
	save := func() {
		t.Helper()
		if err := pf.Save(path); err != nil {
			t.Fatal(err)
		}
		if err := s.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	stamp := func(u string) []byte {
		t.Helper()
		st, ok := s.CredentialStamp(u)
		if !ok {
			t.Fatalf("no stamp for %s", u)
		}
		return st
	}
	a1, b1 := stamp("alice"), stamp("bob")
	if bytes.Equal(a1, b1) || len(a1) == 0 {
		t.Fatal("stamps of two users are equal or empty")
	}
	var buf bytes.Buffer
	pf.WriteTo(&buf)
	for _, line := range strings.Split(buf.String(), "\n") {
		if _, h, ok := strings.Cut(line, ":"); ok && bytes.Contains([]byte(h), a1) {
			t.Fatal("the stamp contains the hash")
		}
	}
	save() // unchanged entries: same stamps
	if !bytes.Equal(stamp("alice"), a1) {
		t.Fatal("stamp changed on a reload that left the entry alone")
	}
	if _, err := pf.Set("alice", "a", 0); err != nil { // same password, new salt
		t.Fatal(err)
	}
	save()
	a2 := stamp("alice")
	if bytes.Equal(a2, a1) || !bytes.Equal(stamp("bob"), b1) {
		t.Fatal("a password change must change that user's stamp, and only it")
	}
	pf.Delete("alice")
	save()
	if _, ok := s.CredentialStamp("alice"); ok {
		t.Fatal("stamp for a deleted user")
	}
	if _, err := pf.Set("alice", "a", 0); err != nil {
		t.Fatal(err)
	}
	save()
	if a3 := stamp("alice"); bytes.Equal(a3, a2) || bytes.Equal(a3, a1) {
		t.Fatal("a re-created user has an old stamp")
	}
	open, err := New(Config{AllowAnonymous: ptr(true)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if st, ok := open.CredentialStamp("anyone"); !ok || len(st) != 0 {
		t.Fatal("without a password file every user has the empty stamp")
	}
}

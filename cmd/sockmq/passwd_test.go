package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sockmq/sockmq/auth"
)

type passwdRun struct {
	code           int
	stdout, stderr string
}

func passwd(t *testing.T, stdin string, args ...string) passwdRun {
	t.Helper()
	var out, errb bytes.Buffer
	code := runPasswd(args, strings.NewReader(stdin), &out, &errb)
	return passwdRun{code, out.String(), errb.String()}
}

func (r passwdRun) expect(t *testing.T, code int, stdout, stderr string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, code, r.stdout, r.stderr)
	}
	if !strings.Contains(r.stdout, stdout) {
		t.Errorf("stdout %q lacks %q", r.stdout, stdout)
	}
	if !strings.Contains(r.stderr, stderr) {
		t.Errorf("stderr %q lacks %q", r.stderr, stderr)
	}
}

// checkLogin asserts that path authenticates user with pw (and not with a
// wrong password) through the auth package, as the broker would.
func checkLogin(t *testing.T, path, user, pw string) {
	t.Helper()
	s, err := auth.New(auth.Config{PasswordFile: path}, nil)
	if err != nil {
		t.Fatalf("auth.New: %v", err)
	}
	if got := s.Authenticate(user, []byte(pw), true, true); got != auth.Allowed {
		t.Errorf("%s/%q: %v, want allowed", user, pw, got)
	}
	if got := s.Authenticate(user, []byte(pw+"x"), true, true); got != auth.BadCredentials {
		t.Errorf("%s wrong password: %v, want bad credentials", user, got)
	}
}

func TestPasswdBatchCreateUpdateDelete(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")

	passwd(t, "", "-c", "-b", path, "alice", "a1").expect(t, 0, "created "+path+"\nadded user alice to "+path, "")
	checkLogin(t, path, "alice", "a1")
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("stat: %v %v", fi, err)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "alice:$7$101$") {
		t.Errorf("file = %q, want a $7$ hash with 101 iterations", data)
	}

	passwd(t, "", "-b", path, "bob", "b1").expect(t, 0, "added user bob to "+path, "")
	passwd(t, "", "-b", path, "alice", "a2").expect(t, 0, "updated password for alice in "+path, "")
	checkLogin(t, path, "alice", "a2")
	checkLogin(t, path, "bob", "b1")

	passwd(t, "", "-b", "-I", "1000", path, "carol", "c1").expect(t, 0, "added user carol", "")
	data, _ = os.ReadFile(path)
	if !strings.Contains(string(data), "carol:$7$1000$") {
		t.Errorf("-I 1000 not honoured: %s", data)
	}

	passwd(t, "", "-D", path, "bob").expect(t, 0, "deleted user bob from "+path, "")
	passwd(t, "", "-D", path, "bob").expect(t, 1, "", "user bob not found in "+path)
	s, _ := auth.New(auth.Config{PasswordFile: path}, nil)
	if s.UserExists("bob") || !s.UserExists("alice") {
		t.Error("delete did not take effect")
	}

	// -c overwrites an existing file.
	passwd(t, "", "-c", "-b", path, "dave", "d1").expect(t, 0, "replaced "+path+" with a new file\nadded user dave", "")
	s, _ = auth.New(auth.Config{PasswordFile: path}, nil)
	if s.UserExists("alice") || !s.UserExists("dave") {
		t.Error("-c did not overwrite")
	}
}

func TestPasswdInteractiveFromPipe(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	passwd(t, "p w\np w\n", "-c", path, "alice").expect(t, 0, "added user alice", "")
	checkLogin(t, path, "alice", "p w")
	passwd(t, "new\r\nnew", path, "alice").expect(t, 0, "updated password for alice", "") // CRLF, no final newline
	checkLogin(t, path, "alice", "new")
	passwd(t, "one\ntwo\n", path, "alice").expect(t, 1, "", "passwords do not match")
	passwd(t, "\n\n", path, "alice").expect(t, 1, "", "empty password")
	passwd(t, "only one line\n", path, "alice").expect(t, 1, "", "expected the password on two lines")
	checkLogin(t, path, "alice", "new") // nothing changed by the refusals
}

func TestPasswdUpgrade(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	hashed, _ := auth.HashPassword("keep", 0)
	orig := "# team\nalice:a1\n\nbob:" + hashed + "\ncarol:c 1\ndave:d1\n"
	if err := os.WriteFile(path, []byte(orig), 0o600); err != nil {
		t.Fatal(err)
	}
	// Adding to a plain-text file works but warns.
	passwd(t, "", "-b", path, "erin", "e1").expect(t, 0, "added user erin", "3 plain-text password(s) (line 2, 5, 6)")
	passwd(t, "", "-U", path).expect(t, 0, "upgraded 3 plain-text passwords in "+path, "")
	checkLogin(t, path, "alice", "a1")
	checkLogin(t, path, "bob", "keep")
	checkLogin(t, path, "carol", "c 1")
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "# team\n") || !strings.Contains(string(data), "bob:"+hashed+"\n") {
		t.Errorf("upgrade lost comments or rehashed a hash:\n%s", data)
	}
	passwd(t, "", "-U", path).expect(t, 0, "no plain-text passwords in "+path+"; file unchanged", "")
	os.WriteFile(path, []byte("x:y\n"), 0o600)
	passwd(t, "", "-U", "-I", "500", path).expect(t, 0, "upgraded 1 plain-text password in", "")
	data, _ = os.ReadFile(path)
	if !strings.HasPrefix(string(data), "x:$7$500$") {
		t.Errorf("-U -I 500: %s", data)
	}
}

func TestPasswdRefusesMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passwd")
	bad := "alice:$7$101$broken\nnocolon\nok:fine\n"
	os.WriteFile(path, []byte(bad), 0o600)
	for _, args := range [][]string{{"-b", path, "bob", "x"}, {"-D", path, "ok"}, {"-U", path}} {
		r := passwd(t, "", args...)
		r.expect(t, 1, "", path+": line 1: user \"alice\": malformed $7$ hash")
		r.expect(t, 1, "", path+": line 2: missing ':'")
		r.expect(t, 1, "", "refusing to rewrite "+path)
		if data, _ := os.ReadFile(path); string(data) != bad {
			t.Fatalf("%v rewrote a malformed file", args)
		}
	}
}

func TestPasswdRefusals(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "passwd")
	missing := filepath.Join(dir, "missing")
	passwd(t, "", "-c", "-b", path, "alice", "a").expect(t, 0, "", "")
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"no args", nil, 2, "Usage:"},
		{"unknown flag", []string{"-x", path, "u"}, 2, "flag provided but not defined: -x"},
		{"c and D", []string{"-c", "-D", path, "u"}, 2, "-c and -D cannot be combined"},
		{"U with c", []string{"-U", "-c", path}, 2, "-U cannot be combined"},
		{"U extra args", []string{"-U", path, "u"}, 2, "-U takes exactly one argument"},
		{"D with b", []string{"-D", "-b", path, "u"}, 2, "-D cannot be combined with -b"},
		{"D missing user", []string{"-D", path}, 2, "-D needs passwordfile and username"},
		{"b missing password", []string{"-b", path, "u"}, 2, "-b needs passwordfile, username and password"},
		{"password without b", []string{path, "u", "pw"}, 2, "use -b"},
		{"bad iterations", []string{"-I", "0", "-b", path, "u", "p"}, 2, "-I 0"},
		{"non-numeric iterations", []string{"-I", "x", "-b", path, "u", "p"}, 2, "invalid value"},
		{"colon username", []string{"-b", path, "a:b", "p"}, 1, "username contains ':'"},
		{"control username", []string{"-b", path, "a\tb", "p"}, 1, "control character"},
		{"empty username", []string{"-b", path, "", "p"}, 1, "empty username"},
		{"empty password", []string{"-b", path, "u", ""}, 1, "empty password"},
		{"missing file", []string{"-b", missing, "u", "p"}, 1, "does not exist (use -c to create it)"},
		{"missing file delete", []string{"-D", missing, "u"}, 1, "does not exist"},
		{"missing file upgrade", []string{"-U", missing}, 1, "does not exist"},
		{"unwritable dir", []string{"-c", "-b", filepath.Join(dir, "no", "such", "dir"), "u", "p"}, 1, "save"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			passwd(t, "", tt.args...).expect(t, tt.code, "", tt.stderr)
		})
	}
	if _, err := os.Stat(missing); err == nil {
		t.Error("a refused command created a file")
	}
	checkLogin(t, path, "alice", "a")
}

func TestPasswdHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help", "-help"} {
		r := passwd(t, "", arg)
		r.expect(t, 0, "sockmq passwd -U", "")
		r.expect(t, 0, "Exit status", "")
	}
}

//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// owner returns the owner, group and permission bits of path.
func owner(t *testing.T, path string) (uid, gid int, mode os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid), fi.Mode().Perm()
}

// A password file read by a service user (mosquitto, the container's
// 65532) keeps its owner, group and mode when root rewrites it, whichever
// way it is rewritten.
func TestPasswdKeepsOwnerGroupAndMode(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatalf("this test hands the file to another user and must run as root (CI does); euid is %d", os.Geteuid())
	}
	const uid, gid = 65532, 65533
	path := filepath.Join(t.TempDir(), "passwd")
	passwd(t, "", "-c", "-b", path, "alice", "a1").expect(t, 0, "created", "")
	if err := os.Chown(path, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{
		{"-b", path, "bob", "b1"},         // add
		{"-b", path, "alice", "a2"},       // update
		{"-D", path, "bob"},               // delete
		{"-c", "-b", path, "carol", "c1"}, // replace
	} {
		passwd(t, "", args...).expect(t, 0, "", "")
		if u, g, m := owner(t, path); u != uid || g != gid || m != 0o640 {
			t.Fatalf("after sockmq passwd %s: owner %d:%d mode %o, want %d:%d mode 640 as before",
				strings.Join(args, " "), u, g, m, uid, gid)
		}
	}
	os.WriteFile(path, []byte("plain:text\n"), 0o640)
	passwd(t, "", "-U", path).expect(t, 0, "upgraded", "")
	if u, g, m := owner(t, path); u != uid || g != gid || m != 0o640 {
		t.Fatalf("after -U: owner %d:%d mode %o, want %d:%d 640", u, g, m, uid, gid)
	}
	checkLogin(t, path, "plain", "text")

	// A new file is private to whoever creates it.
	fresh := filepath.Join(t.TempDir(), "fresh")
	passwd(t, "", "-c", "-b", fresh, "alice", "a1").expect(t, 0, "created", "")
	if u, _, m := owner(t, fresh); u != 0 || m != 0o600 {
		t.Fatalf("new file: owner %d mode %o, want root and 600", u, m)
	}
}

// A user who may write the directory but cannot give the new file the old
// file's owner is refused, and the file is left as it was, rather than
// silently taking the file away from the service that reads it.
func TestPasswdRefusesWhenOwnerCannotBeKept(t *testing.T) {
	bin := sharedBinary(t)
	dir := sharedDir(t, 0o777)
	path := filepath.Join(dir, "passwd")
	passwd(t, "", "-c", "-b", path, "alice", "a1").expect(t, 0, "created", "")
	if err := os.Chown(path, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o666); err != nil { // readable and writable by the other user
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	out, err := asUser(t, 65534, 65534, bin, "passwd", "-b", path, "bob", "b1").CombinedOutput()
	if err == nil {
		t.Fatalf("passwd as another user succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "owner") || !strings.Contains(string(out), "65532") {
		t.Errorf("refusal does not say why (the owner 65532 cannot be kept):\n%s", out)
	}
	after, _ := os.ReadFile(path)
	if string(after) != string(before) {
		t.Errorf("refused rewrite changed the file")
	}
	if u, g, m := owner(t, path); u != 65532 || g != 65532 || m != 0o666 {
		t.Errorf("refused rewrite changed owner/mode: %d:%d %o", u, g, m)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".passwd.tmp-*")); len(left) > 0 {
		t.Errorf("temporary files left behind: %v", left)
	}
}

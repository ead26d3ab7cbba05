//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
)

// asUser returns a command that runs name with args as uid:gid with no
// supplementary groups, through setpriv. These tests check what another
// user (the container's, a service account) can do with the files we write,
// so they need root to switch users: without it they fail rather than skip,
// because CI runs as root and a skipped check proves nothing.
func asUser(t *testing.T, uid, gid int, name string, args ...string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("this test switches to uid %d and must run as root (CI does); euid is %d", uid, os.Geteuid())
	}
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Fatalf("this test switches to uid %d with setpriv (util-linux), which is missing: %v", uid, err)
	}
	full := append([]string{"--reuid", strconv.Itoa(uid), "--regid", strconv.Itoa(gid), "--clear-groups", "--", name}, args...)
	return exec.Command(setpriv, full...)
}

// sharedDir returns a new empty directory that every user may enter, with
// the given mode. t.TempDir's directories are private to root (0700), which
// would hide the files from the user the test switches to.
func sharedDir(t *testing.T, mode os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sockmq-shared-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
	return dir
}

// sharedBinary copies the test binary where any user may run it.
func sharedBinary(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(binary)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(sharedDir(t, 0o755), "sockmq")
	if err := os.WriteFile(path, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

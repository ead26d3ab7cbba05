//go:build unix

package auth

import (
	"os"
	"syscall"
)

// keepOwner gives tmp the owner and group of old, the file it will
// replace. Only root may give a file to another user (and only members
// may give it to another group), so for anyone else this fails unless the
// owner and group are already theirs.
func keepOwner(tmp *os.File, old os.FileInfo) error {
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	fi, err := tmp.Stat()
	if err != nil {
		return err
	}
	got, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || (got.Uid == want.Uid && got.Gid == want.Gid) {
		return nil
	}
	if err := tmp.Chown(int(want.Uid), int(want.Gid)); err != nil {
		return &OwnerError{UID: int(want.Uid), GID: int(want.Gid), AsUID: os.Geteuid(), Err: err}
	}
	return nil
}

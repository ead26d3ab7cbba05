package auth

import (
	"context"
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"time"
)

// DefaultWatchInterval is the polling interval [Service.Watch] uses when
// given zero or a negative interval.
const DefaultWatchInterval = 2 * time.Second

// SettleTime is how long a changed file must stay the same (size,
// modification time and content) before [Service.Watch] loads it. An
// editor that saves in place truncates the file and writes it back in
// pieces: read in between, an empty or partial ACL would deny everything
// and a partial password file would drop users, and the revocation that
// follows a reload would remove their sessions and subscriptions for good.
const SettleTime = time.Second

// fileVersion identifies what a poll saw of one file. Two polls that see
// the same version saw an unchanged file.
type fileVersion struct {
	missing    bool // the file does not exist
	unreadable bool // stat or read failed otherwise
	size       int64
	mtime      int64 // modification time, Unix nanoseconds
	sum        [sha256.Size]byte
}

// sameContent reports whether v holds the content whose hash is sum.
func (v fileVersion) sameContent(sum [sha256.Size]byte) bool {
	return !v.missing && !v.unreadable && v.sum == sum
}

// observation is one poll of both files: their versions and the content
// read, which is what gets loaded once it has settled.
type observation struct {
	pw, acl         fileVersion
	pwData, aclData fileData
}

func observe(path string) (fileVersion, fileData) {
	if path == "" {
		return fileVersion{}, fileData{}
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileVersion{missing: errors.Is(err, fs.ErrNotExist), unreadable: !errors.Is(err, fs.ErrNotExist)}, fileData{err: err}
	}
	fd := readFileData(path)
	if fd.err != nil {
		return fileVersion{missing: errors.Is(fd.err, fs.ErrNotExist), unreadable: !errors.Is(fd.err, fs.ErrNotExist)}, fd
	}
	return fileVersion{size: fi.Size(), mtime: fi.ModTime().UnixNano(), sum: sha256.Sum256(fd.data)}, fd
}

func (s *Service) observe() observation {
	var o observation
	o.pw, o.pwData = observe(s.cfg.PasswordFile)
	o.acl, o.aclData = observe(s.cfg.ACLFile)
	return o
}

// loaded reports whether o shows the content of the rules in force.
func (s *Service) loaded(o observation) bool {
	sn := s.cur.Load()
	return (s.cfg.PasswordFile == "" || o.pw.sameContent(sn.pwSum)) &&
		(s.cfg.ACLFile == "" || o.acl.sameContent(sn.aclSum))
}

// Watch polls the password and ACL files every interval and reloads them
// once a change has settled: the files must look the same (size,
// modification time and content) to two consecutive polls at least
// [SettleTime] apart, so that a file still being written is never loaded.
// With an interval of a second a change takes effect within about two
// seconds. What is loaded is the content those polls saw, and a version
// that failed to load is reported once, not on every poll. A SIGHUP-style
// [Service.Reload] is not delayed by any of this. Watch returns when ctx
// is done.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if s.cfg.PasswordFile == "" && s.cfg.ACLFile == "" {
		<-ctx.Done()
		return
	}
	var (
		pending   *observation    // a change seen by the last poll, not loaded yet
		since     time.Time       // when pending was first seen
		attempted *[2]fileVersion // the last versions loaded or refused by Watch
	)
	timer := time.NewTimer(interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		o := s.observe()
		now := time.Now()
		wait := interval
		switch {
		case s.loaded(o) || (attempted != nil && *attempted == [2]fileVersion{o.pw, o.acl}):
			pending = nil // nothing new to load
		case pending == nil || o.pw != pending.pw || o.acl != pending.acl:
			pending, since = &o, now // changed (again): wait until it settles
			wait = min(interval, SettleTime)
		case now.Sub(since) < SettleTime:
			wait = min(interval, SettleTime-now.Sub(since))
		default:
			attempted, pending = &[2]fileVersion{o.pw, o.acl}, nil
			_ = s.reloadFrom(o.pwData, o.aclData) // logs its own errors
		}
		timer.Reset(wait)
	}
}

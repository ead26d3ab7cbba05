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

// fileState is what Watch compares between polls: the SHA-256 of the
// content, or missing.
type fileState struct {
	missing bool
	sum     [sha256.Size]byte
}

func readState(path string) fileState {
	if path == "" {
		return fileState{}
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fileState{missing: errors.Is(err, fs.ErrNotExist)}
	}
	return fileState{sum: sha256.Sum256(data)}
}

// Watch polls the password and ACL files every interval and calls
// [Service.Reload] when the content of either differs from what was last
// loaded or last attempted, so a broken file is reported once, not on every
// poll. Comparing content (not only mtime and size) catches edits that keep
// both. Watch returns when ctx is done.
func (s *Service) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	if s.cfg.PasswordFile == "" && s.cfg.ACLFile == "" {
		<-ctx.Done()
		return
	}
	sn := s.cur.Load()
	lastPW, lastACL := fileState{sum: sn.pwSum}, fileState{sum: sn.aclSum}
	if s.cfg.PasswordFile == "" {
		lastPW = fileState{}
	}
	if s.cfg.ACLFile == "" {
		lastACL = fileState{}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		pw, acl := readState(s.cfg.PasswordFile), readState(s.cfg.ACLFile)
		if pw == lastPW && acl == lastACL {
			continue
		}
		lastPW, lastACL = pw, acl
		s.Reload() // logs its own errors
	}
}

package bridge

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MaxRevokedTokens bounds the revocation list the bridge keeps itself.
// When it is full of unexpired entries, the tenth that expire soonest are
// forgotten (counted in sockmq_limit_refusals_total{limit=
// "bridge_revoked_tokens"} and logged).
const MaxRevokedTokens = 100_000

// revokedFileHeader starts the revocation file; each further line is
// "<exp unix seconds> <token id>".
const revokedFileHeader = "# sockmq bridge: revoked login tokens, one \"<expiry unix seconds> <token id>\" per line\n"

// revocationList is the bridge's own [Revocations]: a map from token id to
// expiry, and, with a data directory, a file that is appended to (and
// synced) on every revocation and rewritten atomically without the
// expired entries when it holds twice as many lines as live entries.
type revocationList struct {
	path   string // "" = memory only
	max    int
	onDrop func(n int) // the list was full: n entries forgotten

	mu     sync.RWMutex
	m      map[string]int64
	f      *os.File // append handle; nil in memory or after a failure
	lines  int      // entries in the file
	closed bool     // after Close: memory only
	fns    []func(jti string)
}

var _ Revocations = (*revocationList)(nil)

// openRevocationList loads <dataDir>/bridge-revoked-tokens (dropping
// expired entries) or, with an empty dataDir, returns an in-memory list.
func openRevocationList(dataDir string, max int, onDrop func(int)) (*revocationList, error) {
	l := &revocationList{max: max, onDrop: onDrop, m: make(map[string]int64)}
	if dataDir == "" {
		return l, nil
	}
	l.path = filepath.Join(dataDir, RevokedTokensFile)
	data, err := os.ReadFile(l.path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("bridge: read %s: %w", l.path, err)
	}
	now := time.Now().Unix()
	lines := strings.Split(string(data), "\n")
	// The last piece is "" or an append torn by a crash (no newline yet);
	// malformed lines are skipped too.
	for _, line := range lines[:len(lines)-1] {
		exp, jti, ok := parseRevocation(line)
		if ok && exp > now {
			l.m[jti] = exp
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.trimLocked(now); n > 0 && onDrop != nil {
		onDrop(n)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("bridge: create data directory: %w", err)
	}
	if err := l.compactLocked(now); err != nil {
		return nil, err
	}
	return l, nil
}

func parseRevocation(line string) (exp int64, jti string, ok bool) {
	a, b, found := strings.Cut(line, " ")
	if !found || b == "" || strings.ContainsAny(b, " \t") {
		return 0, "", false
	}
	exp, err := strconv.ParseInt(a, 10, 64)
	return exp, b, err == nil
}

// Revoke implements [Revocations].
func (l *revocationList) Revoke(jti string, exp int64) error {
	now := time.Now().Unix()
	var err error
	dropped := 0
	l.mu.Lock()
	if _, dup := l.m[jti]; !dup && exp > now {
		if len(l.m) >= l.max {
			dropped = l.trimLocked(now)
		}
		l.m[jti] = exp
		err = l.appendLocked(jti, exp, now)
	}
	fns := l.fns
	l.mu.Unlock()
	if dropped > 0 && l.onDrop != nil {
		l.onDrop(dropped)
	}
	for _, fn := range fns {
		fn(jti)
	}
	return err
}

// Revoked implements [Revocations].
func (l *revocationList) Revoked(jti string) bool {
	l.mu.RLock()
	exp, ok := l.m[jti]
	l.mu.RUnlock()
	return ok && time.Now().Unix() < exp
}

// OnRevoke implements [Revocations].
func (l *revocationList) OnRevoke(fn func(jti string)) {
	l.mu.Lock()
	l.fns = append(l.fns, fn)
	l.mu.Unlock()
}

// Close closes the file. Later revocations stay in memory only.
func (l *revocationList) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// trimLocked drops expired entries and, if the list is still full, the
// tenth of it that expires soonest. It returns how many unexpired entries
// it dropped.
func (l *revocationList) trimLocked(now int64) int {
	for jti, exp := range l.m {
		if exp <= now {
			delete(l.m, jti)
		}
	}
	if len(l.m) < l.max {
		return 0
	}
	type entry struct {
		jti string
		exp int64
	}
	all := make([]entry, 0, len(l.m))
	for jti, exp := range l.m {
		all = append(all, entry{jti, exp})
	}
	slices.SortFunc(all, func(a, b entry) int { return cmp.Compare(a.exp, b.exp) })
	n := len(l.m) - l.max + max(1, l.max/10)
	for _, e := range all[:min(n, len(all))] {
		delete(l.m, e.jti)
	}
	return n
}

func (l *revocationList) appendLocked(jti string, exp, now int64) error {
	if l.path == "" || l.closed {
		return nil
	}
	if l.f == nil || l.lines >= 2*len(l.m)+1024 {
		return l.compactLocked(now)
	}
	if _, err := fmt.Fprintf(l.f, "%d %s\n", exp, jti); err != nil {
		return l.compactLocked(now) // rewrite it whole rather than leave it torn
	}
	l.lines++
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("bridge: sync %s: %w", l.path, err)
	}
	return nil
}

// compactLocked rewrites the file atomically with the unexpired entries
// (temporary file, fsync, rename, fsync of the directory) and reopens it
// for appending.
func (l *revocationList) compactLocked(now int64) error {
	if l.f != nil {
		_ = l.f.Close()
		l.f = nil
	}
	var b bytes.Buffer
	b.WriteString(revokedFileHeader)
	n := 0
	for jti, exp := range l.m {
		if exp > now {
			fmt.Fprintf(&b, "%d %s\n", exp, jti)
			n++
		}
	}
	if err := writeFileAtomic(l.path, b.Bytes()); err != nil {
		return err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("bridge: open %s: %w", l.path, err)
	}
	l.f, l.lines = f, n
	return nil
}

// writeFileAtomic replaces path with data (mode 0600): readers and a crash
// see the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bridge: write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			err = fmt.Errorf("bridge: write %s: %w", path, err)
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(dir); derr == nil { // best effort: persist the rename
		_ = d.Sync()
		d.Close()
	}
	return nil
}

package auth

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"unicode"
	"unicode/utf8"
)

// lineKind classifies a password-file line.
type lineKind uint8

const (
	lineOther  lineKind = iota // blank line or comment, kept verbatim
	lineHashed                 // user:<hash>
	linePlain                  // user:<plain-text password>
)

type pwLine struct {
	kind   lineKind
	text   string // verbatim text for lineOther
	user   string
	secret string // hash string or plain-text password
}

// PasswordFile is a mosquitto-compatible password file: one "user:hash" entry
// per line, with '#' comment lines and blank lines. Parsing keeps comments,
// blank lines and order so the file can be rewritten with minimal change.
//
// Entries whose secret is not a recognized hash ($7$, $6$, $2a$/$2b$/$2y$)
// are plain-text passwords: they parse, but [Service] refuses to load such a
// file; [PasswordFile.Upgrade] hashes them.
//
// The zero value is an empty file ready for [PasswordFile.Set]. A
// PasswordFile is not safe for concurrent mutation.
type PasswordFile struct {
	lines []pwLine
	index map[string]int // user -> index in lines
}

// ValidateUsername reports why name cannot be stored in a password file, or
// nil if it can. Names must be non-empty valid UTF-8 without ':', control
// characters or surrounding white space, and must not start with '#'.
func ValidateUsername(name string) error {
	switch {
	case name == "":
		return errors.New("empty username")
	case !utf8.ValidString(name):
		return errors.New("username is not valid UTF-8")
	case strings.ContainsRune(name, ':'):
		return errors.New("username contains ':'")
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return errors.New("username contains a control character")
	case strings.TrimSpace(name) != name:
		return errors.New("username starts or ends with white space")
	case name[0] == '#':
		return errors.New("username starts with '#'")
	}
	return nil
}

// ParsePasswordFile parses a password file. On malformed lines it returns a
// *[ParseError] naming every bad line, and a nil file.
func ParsePasswordFile(r io.Reader) (*PasswordFile, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read password file: %w", err)
	}
	return parsePasswordFile(data, "")
}

// LoadPasswordFile reads and parses the password file at path.
func LoadPasswordFile(path string) (*PasswordFile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parsePasswordFile(data, path)
}

func parsePasswordFile(data []byte, name string) (*PasswordFile, error) {
	pe := &ParseError{File: name}
	pf := &PasswordFile{index: map[string]int{}}
	text := string(data)
	text = strings.TrimSuffix(text, "\n")
	if text == "" {
		return pf, nil
	}
	for i, raw := range strings.Split(text, "\n") {
		n := i + 1
		line := strings.TrimRight(raw, " \t\r")
		trimmed := strings.TrimLeft(line, " \t")
		if trimmed == "" || trimmed[0] == '#' {
			pf.lines = append(pf.lines, pwLine{kind: lineOther, text: line})
			continue
		}
		user, secret, ok := strings.Cut(line, ":")
		if !ok {
			pe.add(n, "missing ':' between username and password")
			continue
		}
		if err := ValidateUsername(user); err != nil {
			pe.add(n, "%v", err)
			continue
		}
		if secret == "" {
			pe.add(n, "user %q has an empty password", user)
			continue
		}
		kind := linePlain
		if isHashPrefix(secret) {
			if _, err := parseHash(secret); err != nil {
				pe.add(n, "user %q: %v", user, err)
				continue
			}
			kind = lineHashed
		}
		if first, dup := pf.index[user]; dup {
			pe.add(n, "duplicate user %q (first defined on line %d)", user, pf.lineNumber(first))
			continue
		}
		pf.index[user] = len(pf.lines)
		pf.lines = append(pf.lines, pwLine{kind: kind, user: user, secret: secret})
	}
	if err := pe.orNil(); err != nil {
		return nil, err
	}
	return pf, nil
}

// lineNumber returns the 1-based line of lines[i]; valid while no line has
// been deleted, which holds during parsing.
func (pf *PasswordFile) lineNumber(i int) int { return i + 1 }

// Users returns the usernames in file order.
func (pf *PasswordFile) Users() []string {
	var users []string
	for _, l := range pf.lines {
		if l.kind != lineOther {
			users = append(users, l.user)
		}
	}
	return users
}

// Has reports whether user has an entry.
func (pf *PasswordFile) Has(user string) bool {
	_, ok := pf.index[user]
	return ok
}

// PlainText returns the users whose entry holds a plain-text password and the
// 1-based line numbers of those entries in the file as it would be written.
func (pf *PasswordFile) PlainText() (users []string, lines []int) {
	for i, l := range pf.lines {
		if l.kind == linePlain {
			users = append(users, l.user)
			lines = append(lines, i+1)
		}
	}
	return users, lines
}

// Set hashes password as $7$ with the given iteration count (0 means
// [DefaultIterations]) and stores it for user, adding the user at the end of
// the file if absent. It reports whether the user was added.
func (pf *PasswordFile) Set(user, password string, iterations int) (added bool, err error) {
	if err := ValidateUsername(user); err != nil {
		return false, err
	}
	h, err := HashPassword(password, iterations)
	if err != nil {
		return false, err
	}
	if pf.index == nil {
		pf.index = map[string]int{}
	}
	if i, ok := pf.index[user]; ok {
		pf.lines[i] = pwLine{kind: lineHashed, user: user, secret: h}
		return false, nil
	}
	pf.index[user] = len(pf.lines)
	pf.lines = append(pf.lines, pwLine{kind: lineHashed, user: user, secret: h})
	return true, nil
}

// Delete removes user and reports whether it was present.
func (pf *PasswordFile) Delete(user string) bool {
	i, ok := pf.index[user]
	if !ok {
		return false
	}
	pf.lines = append(pf.lines[:i], pf.lines[i+1:]...)
	delete(pf.index, user)
	for u, j := range pf.index {
		if j > i {
			pf.index[u] = j - 1
		}
	}
	return true
}

// Upgrade replaces every plain-text password with its $7$ hash (0 iterations
// means [DefaultIterations]), leaving hashed entries alone, and returns how
// many entries it hashed.
func (pf *PasswordFile) Upgrade(iterations int) (int, error) {
	n := 0
	for i, l := range pf.lines {
		if l.kind != linePlain {
			continue
		}
		h, err := HashPassword(l.secret, iterations)
		if err != nil {
			return n, fmt.Errorf("user %q: %w", l.user, err)
		}
		pf.lines[i] = pwLine{kind: lineHashed, user: l.user, secret: h}
		n++
	}
	return n, nil
}

// hashes returns the parsed hash of every hashed entry.
func (pf *PasswordFile) hashes() map[string]*pwHash {
	m := make(map[string]*pwHash, len(pf.index))
	for _, l := range pf.lines {
		if l.kind == lineHashed {
			if h, err := parseHash(l.secret); err == nil {
				m[l.user] = h
			}
		}
	}
	return m
}

// WriteTo writes the file in mosquitto's format, one entry or kept line per
// line, each ending in '\n'.
func (pf *PasswordFile) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	for _, l := range pf.lines {
		if l.kind == lineOther {
			b.WriteString(l.text)
		} else {
			b.WriteString(l.user)
			b.WriteByte(':')
			b.WriteString(l.secret)
		}
		b.WriteByte('\n')
	}
	return b.WriteTo(w)
}

// Save writes the file to path atomically: it writes a temporary file in the
// same directory, syncs it, renames it over path and syncs the directory.
// Readers see either the old or the new file, never a mix. A new file gets
// mode 0600; a file that is replaced keeps its mode, owner and group, so
// the service that reads it (mosquitto, sockmq as a service user) still
// can. When the owner or group cannot be kept (only root may give a file
// away), Save fails with an error wrapping [ErrOwnerNotKept] and leaves
// the file unchanged.
func (pf *PasswordFile) Save(path string) error {
	var b bytes.Buffer
	pf.WriteTo(&b)
	return writeFileAtomic(path, b.Bytes(), 0o600)
}

// writeFileAtomic replaces path with data through a temporary file and a
// rename. newMode applies to a new file; an existing file's mode, owner
// and group are given to its replacement.
func writeFileAtomic(path string, data []byte, newMode os.FileMode) (err error) {
	mode := newMode
	old, err := os.Stat(path)
	switch {
	case err == nil:
		mode = old.Mode().Perm()
	case errors.Is(err, fs.ErrNotExist):
		old = nil
	default:
		return fmt.Errorf("save %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if old != nil {
		if err = keepOwner(tmp, old); err != nil {
			return fmt.Errorf("save %s: %w", path, err)
		}
	}
	if err = tmp.Chmod(mode); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if _, err = tmp.Write(data); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err = tmp.Sync(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err = tmp.Close(); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save %s: %w", path, err)
	}
	if d, derr := os.Open(dir); derr == nil { // best effort: persist the rename
		d.Sync()
		d.Close()
	}
	return nil
}

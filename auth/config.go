package auth

import (
	"crypto/sha256"
	"errors"
	"os"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

// Config selects the password and ACL files. The zero value is an open
// broker: anonymous clients allowed, every topic readable and writable.
type Config struct {
	// PasswordFile is the path of a mosquitto-compatible password file.
	// Empty means no password file: usernames are not verified (any
	// username is accepted when anonymous access is allowed, as mosquitto
	// does). The file must not contain plain-text passwords; upgrade them
	// with "sockmq passwd -U".
	PasswordFile string `yaml:"password_file"`
	// ACLFile is the path of a mosquitto-style ACL file (see ACL.md).
	// Empty means no ACL: every connected client may read and write every
	// topic.
	ACLFile string `yaml:"acl_file"`
	// AllowAnonymous says whether clients without a username may connect.
	// Nil means true when PasswordFile is empty and false otherwise.
	AllowAnonymous *bool `yaml:"allow_anonymous"`
}

// anonymousAllowed resolves AllowAnonymous's default.
func (c Config) anonymousAllowed() bool {
	if c.AllowAnonymous != nil {
		return *c.AllowAnonymous
	}
	return c.PasswordFile == ""
}

// Validate loads and parses both files and returns every problem at once
// (joined with errors.Join), each naming its key, for example
// "auth.password_file: open /x: no such file or directory".
func (c Config) Validate() error {
	_, err := c.load()
	return err
}

// fileData is a file's content as read at one moment, or why it could not
// be read. A zero fileData stands for a file that is not configured.
type fileData struct {
	data []byte
	err  error
}

// readFileData reads path; an empty path gives the zero fileData.
func readFileData(path string) fileData {
	if path == "" {
		return fileData{}
	}
	data, err := os.ReadFile(path)
	return fileData{data: data, err: err}
}

// load reads both files into a new snapshot.
func (c Config) load() (*snapshot, error) {
	return c.build(readFileData(c.PasswordFile), readFileData(c.ACLFile))
}

// build parses the files' content, read beforehand, into a new snapshot.
func (c Config) build(pw, acl fileData) (*snapshot, error) {
	var errs []error
	s := &snapshot{anonymous: c.anonymousAllowed(), fakeIter: DefaultIterations}
	if c.PasswordFile != "" {
		err := pw.err
		if err == nil {
			s.pwSum = sha256.Sum256(pw.data)
			var pf *PasswordFile
			if pf, err = parsePasswordFile(pw.data, c.PasswordFile); err == nil {
				err = plainTextError(pf, c.PasswordFile)
				s.hashes = pf.hashes()
				s.fakeIter = commonIterations(s.hashes)
				s.fake = fakeFor(s.hashes, s.fakeIter)
			}
		}
		if err != nil {
			errs = append(errs, keyError("auth.password_file", err))
		}
	}
	if c.ACLFile != "" {
		err := acl.err
		if err == nil {
			s.aclSum = sha256.Sum256(acl.data)
			s.acl, err = parseACL(acl.data, c.ACLFile)
		}
		if err != nil {
			errs = append(errs, keyError("auth.acl_file", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s.fake == nil {
		s.fake = fakeHash(s.fakeIter)
	}
	return s, nil
}

// keyError prefixes every line of err's message with key while keeping err
// in the chain for errors.Is and errors.As.
func keyError(key string, err error) error {
	msg := key + ": " + strings.ReplaceAll(err.Error(), "\n", "\n"+key+": ")
	return &wrapped{msg: msg, err: err}
}

type wrapped struct {
	msg string
	err error
}

// Error returns the keyed message.
func (w *wrapped) Error() string { return w.msg }

// Unwrap returns the original error.
func (w *wrapped) Unwrap() error { return w.err }

// plainTextError reports plain-text entries, which the broker refuses.
func plainTextError(pf *PasswordFile, path string) error {
	users, lines := pf.PlainText()
	if len(users) == 0 {
		return nil
	}
	pe := &ParseError{File: path}
	for i, u := range users {
		pe.add(lines[i], "user %q has a plain-text password; hash it with: sockmq passwd -U %s", u, path)
	}
	return pe
}

// commonIterations returns the most frequent $7$ iteration count, so an
// unknown user's fake verification costs what a typical real one does.
func commonIterations(hashes map[string]*pwHash) int {
	counts := map[int]int{}
	for _, h := range hashes {
		if h.kind == kindPBKDF2 {
			counts[h.iter]++
		}
	}
	best, bestN := DefaultIterations, 0
	for iter, n := range counts {
		if n > bestN || (n == bestN && iter > best) {
			best, bestN = iter, n
		}
	}
	return best
}

// fakeFor returns the hash unknown users are verified against: one of the
// file's most common kind, so that their cost matches a real user's. $7$
// uses iter iterations; bcrypt uses the most common cost.
func fakeFor(hashes map[string]*pwHash, iter int) *pwHash {
	var n7, n6 int
	costs := map[int]int{}
	for _, h := range hashes {
		switch h.kind {
		case kindPBKDF2:
			n7++
		case kindSHA512:
			n6++
		case kindBcrypt:
			if c, err := bcrypt.Cost([]byte(h.raw)); err == nil {
				costs[c]++
			}
		}
	}
	cost, nb := 0, 0
	for c, n := range costs {
		if n > nb || (n == nb && c > cost) {
			cost, nb = c, n
		}
	}
	switch {
	case nb > n7 && nb > n6:
		if raw, err := bcrypt.GenerateFromPassword(randomBytes(16), cost); err == nil {
			return &pwHash{kind: kindBcrypt, raw: string(raw)}
		}
	case n6 > n7:
		return &pwHash{kind: kindSHA512, salt: randomBytes(saltLen), sum: randomBytes(sha512Len)}
	}
	return fakeHash(iter)
}

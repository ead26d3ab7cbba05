package auth

import (
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"
)

const (
	// DefaultIterations is the PBKDF2 iteration count used for new $7$
	// hashes when none is given. It matches mosquitto_passwd's default.
	DefaultIterations = 101
	// MaxIterations is the largest PBKDF2 iteration count accepted in a
	// password file or by [HashPassword].
	MaxIterations = 10_000_000

	saltLen    = 12 // bytes, as written by mosquitto_passwd
	sha512Len  = 64 // bytes
	prefixPBK  = "$7$"
	prefixSHA  = "$6$"
	maxSaltLen = 1024
)

// ErrEmptyPassword is returned when an empty password would be stored.
var ErrEmptyPassword = errors.New("empty password")

// hashKind identifies a password-hash format.
type hashKind uint8

const (
	kindPBKDF2 hashKind = iota + 1 // $7$
	kindSHA512                     // $6$
	kindBcrypt                     // $2a$, $2b$, $2y$
)

// pwHash is a parsed password hash.
type pwHash struct {
	kind hashKind
	iter int
	salt []byte
	sum  []byte
	raw  string
}

// isHashPrefix reports whether s starts like one of the supported hashes.
// Such a string is never treated as a plain-text password.
func isHashPrefix(s string) bool {
	return strings.HasPrefix(s, prefixPBK) || strings.HasPrefix(s, prefixSHA) ||
		strings.HasPrefix(s, "$2a$") || strings.HasPrefix(s, "$2b$") || strings.HasPrefix(s, "$2y$")
}

// parseHash parses a password hash string in one of the supported formats.
func parseHash(s string) (*pwHash, error) {
	switch {
	case strings.HasPrefix(s, prefixPBK):
		parts := strings.Split(s[len(prefixPBK):], "$")
		if len(parts) != 3 {
			return nil, errors.New("malformed $7$ hash: want $7$<iterations>$<salt>$<hash>")
		}
		iter, err := strconv.Atoi(parts[0])
		if err != nil || iter < 1 || iter > MaxIterations {
			return nil, fmt.Errorf("malformed $7$ hash: iterations %q: want 1..%d", parts[0], MaxIterations)
		}
		salt, sum, err := decodeSaltSum(parts[1], parts[2])
		if err != nil {
			return nil, fmt.Errorf("malformed $7$ hash: %w", err)
		}
		return &pwHash{kind: kindPBKDF2, iter: iter, salt: salt, sum: sum, raw: s}, nil
	case strings.HasPrefix(s, prefixSHA):
		parts := strings.Split(s[len(prefixSHA):], "$")
		if len(parts) != 2 {
			return nil, errors.New("malformed $6$ hash: want $6$<salt>$<hash>")
		}
		salt, sum, err := decodeSaltSum(parts[0], parts[1])
		if err != nil {
			return nil, fmt.Errorf("malformed $6$ hash: %w", err)
		}
		return &pwHash{kind: kindSHA512, salt: salt, sum: sum, raw: s}, nil
	case strings.HasPrefix(s, "$2"):
		if _, err := bcrypt.Cost([]byte(s)); err != nil {
			return nil, fmt.Errorf("malformed bcrypt hash: %w", err)
		}
		return &pwHash{kind: kindBcrypt, raw: s}, nil
	}
	return nil, errors.New("unknown hash format")
}

func decodeSaltSum(salt64, sum64 string) (salt, sum []byte, err error) {
	salt, err = base64.StdEncoding.Strict().DecodeString(salt64)
	if err != nil || len(salt) == 0 || len(salt) > maxSaltLen {
		return nil, nil, errors.New("bad base64 salt")
	}
	sum, err = base64.StdEncoding.Strict().DecodeString(sum64)
	if err != nil || len(sum) != sha512Len {
		return nil, nil, errors.New("bad base64 hash: want 64 bytes")
	}
	return salt, sum, nil
}

// verify reports whether password matches h. The comparison is constant-time
// for the hash formats implemented here.
func (h *pwHash) verify(password []byte) bool {
	switch h.kind {
	case kindPBKDF2:
		got, err := pbkdf2.Key(sha512.New, string(password), h.salt, h.iter, sha512Len)
		return err == nil && subtle.ConstantTimeCompare(got, h.sum) == 1
	case kindSHA512:
		d := sha512.New()
		d.Write(password)
		d.Write(h.salt)
		return subtle.ConstantTimeCompare(d.Sum(nil), h.sum) == 1
	case kindBcrypt:
		return bcrypt.CompareHashAndPassword([]byte(h.raw), password) == nil
	}
	return false
}

// HashPassword returns a mosquitto 2.x compatible $7$ (PBKDF2-HMAC-SHA512)
// hash of password with a random 12-byte salt. Zero iterations means
// [DefaultIterations].
func HashPassword(password string, iterations int) (string, error) {
	if password == "" {
		return "", ErrEmptyPassword
	}
	if iterations == 0 {
		iterations = DefaultIterations
	}
	if iterations < 1 || iterations > MaxIterations {
		return "", fmt.Errorf("iterations %d: want 1..%d", iterations, MaxIterations)
	}
	salt := make([]byte, saltLen)
	rand.Read(salt)
	sum, err := pbkdf2.Key(sha512.New, password, salt, iterations, sha512Len)
	if err != nil {
		return "", fmt.Errorf("pbkdf2: %w", err)
	}
	return prefixPBK + strconv.Itoa(iterations) + "$" +
		base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(sum), nil
}

// hashSHA512 returns a mosquitto 1.x style $6$ hash: base64(sha512(password
// || salt)). It is kept for tests and interoperability; new passwords use $7$.
func hashSHA512(password string) string {
	salt := make([]byte, saltLen)
	rand.Read(salt)
	d := sha512.New()
	d.Write([]byte(password))
	d.Write(salt)
	return prefixSHA + base64.StdEncoding.EncodeToString(salt) + "$" + base64.StdEncoding.EncodeToString(d.Sum(nil))
}

// VerifyPassword reports whether password matches the hash string encoded,
// which may be $7$, $6$ or bcrypt. It returns an error only when encoded is
// not a well-formed hash.
func VerifyPassword(encoded string, password []byte) (bool, error) {
	h, err := parseHash(encoded)
	if err != nil {
		return false, err
	}
	return h.verify(password), nil
}

// fakeHash returns a random $7$ hash that no password matches in practice.
// Verifying an unknown user against it costs the same as a real $7$ check.
func fakeHash(iterations int) *pwHash {
	return &pwHash{kind: kindPBKDF2, iter: iterations, salt: randomBytes(saltLen), sum: randomBytes(sha512Len)}
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

package bridge

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// AuthKeyFile is the file in the data directory that keeps the generated
// token signing key when bridge.auth_key is empty.
const AuthKeyFile = "bridge-auth.key"

// tokenClaims is the payload of the tokens the bridge issues; the client
// reads it (unverified) into socket.authToken.
type tokenClaims struct {
	Username string `json:"username"`
	IAT      int64  `json:"iat"`
	EXP      int64  `json:"exp"`
}

// signer issues and verifies HS256 JSON Web Tokens.
type signer struct {
	key []byte
	ttl time.Duration
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

func (s *signer) sign(username string, now time.Time) (string, tokenClaims) {
	c := tokenClaims{Username: username, IAT: now.Unix(), EXP: now.Add(s.ttl).Unix()}
	body, _ := json.Marshal(c)
	msg := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(body)
	return msg + "." + s.mac(msg), c
}

func (s *signer) mac(msg string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// Token verification failures.
var (
	errTokenMalformed = errors.New("jwt malformed")
	errTokenSignature = errors.New("invalid signature")
	errTokenAlgorithm = errors.New("invalid algorithm")
	errTokenExpired   = errors.New("jwt expired")
)

// verify checks a token's algorithm, signature and expiry.
func (s *signer) verify(tok string, now time.Time) (tokenClaims, error) {
	var c tokenClaims
	h, rest, ok1 := strings.Cut(tok, ".")
	body, sig, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(sig, ".") {
		return c, errTokenMalformed
	}
	hb, err := base64.RawURLEncoding.DecodeString(h)
	if err != nil {
		return c, errTokenMalformed
	}
	var hdr struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &hdr) != nil {
		return c, errTokenMalformed
	}
	if hdr.Alg != "HS256" {
		return c, errTokenAlgorithm
	}
	want := s.mac(h + "." + body)
	if !hmac.Equal([]byte(want), []byte(sig)) {
		return c, errTokenSignature
	}
	bb, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || json.Unmarshal(bb, &c) != nil || c.Username == "" {
		return c, errTokenMalformed
	}
	if c.EXP != 0 && now.Unix() >= c.EXP {
		return c, errTokenExpired
	}
	return c, nil
}

// tokenError is the SC error for a failed verification.
func tokenError(err error, c tokenClaims) *Error {
	if errors.Is(err, errTokenExpired) {
		return &Error{Name: ErrNameTokenExpired, Message: err.Error(), Fields: map[string]any{
			"expiry": time.Unix(c.EXP, 0).UTC().Format(time.RFC3339), "isBadToken": true,
		}}
	}
	return &Error{Name: ErrNameTokenInvalid, Message: err.Error(), Fields: map[string]any{"isBadToken": true}}
}

// loadAuthKey returns the configured key, or the key kept in dataDir
// (created on first use), or, without a data directory, a random key that
// lives as long as the process.
func loadAuthKey(configured, dataDir string) (key []byte, persisted bool, err error) {
	if configured != "" {
		return []byte(configured), true, nil
	}
	if dataDir == "" {
		k := make([]byte, 32)
		rand.Read(k)
		return k, false, nil
	}
	path := filepath.Join(dataDir, AuthKeyFile)
	if b, err := os.ReadFile(path); err == nil {
		k, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(k) < 16 {
			return nil, false, fmt.Errorf("bridge.auth_key: %s is not a hex key of at least 16 bytes; delete it to generate a new one (issued tokens become invalid)", path)
		}
		return k, true, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, false, fmt.Errorf("bridge.auth_key: read %s: %w", path, err)
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, false, fmt.Errorf("bridge.auth_key: create data directory: %w", err)
	}
	k := make([]byte, 32)
	rand.Read(k)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return loadAuthKey("", dataDir) // another process won the race
	}
	if err != nil {
		return nil, false, fmt.Errorf("bridge.auth_key: create %s: %w", path, err)
	}
	_, werr := f.WriteString(hex.EncodeToString(k) + "\n")
	if serr := f.Sync(); werr == nil {
		werr = serr
	}
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		_ = os.Remove(path)
		return nil, false, fmt.Errorf("bridge.auth_key: write %s: %w", path, werr)
	}
	return k, true, nil
}

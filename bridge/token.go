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

// RevokedTokensFile is the file in the data directory that keeps the ids
// of revoked (logged-out) tokens until they expire.
const RevokedTokensFile = "bridge-revoked-tokens"

// tokenClaims is the payload of the tokens the bridge issues; the client
// reads it (unverified) into socket.authToken.
type tokenClaims struct {
	Username string `json:"username"`
	IAT      int64  `json:"iat"`
	EXP      int64  `json:"exp"`
	// JTI identifies the token, so that a logout can revoke it alone.
	JTI string `json:"jti"`
	// Cred binds the token to its user's credentials: a keyed fingerprint
	// of Authorizer.CredentialStamp at issue time (see signer.credMark).
	Cred string `json:"cred"`
}

// signer issues and verifies HS256 JSON Web Tokens.
type signer struct {
	key []byte
	ttl time.Duration
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// sign issues a token for username bound to the credential stamp.
func (s *signer) sign(username string, stamp []byte, now time.Time) (string, tokenClaims) {
	c := tokenClaims{
		Username: username, IAT: now.Unix(), EXP: now.Add(s.ttl).Unix(),
		JTI: newTokenID(), Cred: s.credMark(username, stamp),
	}
	return s.encode(c), c
}

func (s *signer) encode(c tokenClaims) string {
	body, _ := json.Marshal(c)
	msg := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(body)
	return msg + "." + s.mac(msg)
}

func (s *signer) mac(msg string) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// credMark is the token's fingerprint of the user's credential stamp: 96
// bits of an HMAC under the signing key, so the token reveals nothing of
// the password file and cannot be matched against it without the key.
func (s *signer) credMark(username string, stamp []byte) string {
	h := hmac.New(sha256.New, s.key)
	h.Write([]byte("sockmq-bridge-cred\x00"))
	h.Write([]byte(username))
	h.Write([]byte{0})
	h.Write(stamp)
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:12])
}

// newTokenID returns 128 random bits, URL-safe.
func newTokenID() string {
	var b [16]byte
	rand.Read(b[:])
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// Token verification failures.
var (
	errTokenMalformed = errors.New("jwt malformed")
	errTokenSignature = errors.New("invalid signature")
	errTokenAlgorithm = errors.New("invalid algorithm")
	errTokenExpired   = errors.New("jwt expired")
	errTokenNoExpiry  = errors.New("jwt has no exp: tokens without an expiry are refused")
	errTokenUnbound   = errors.New("token without jti or cred (issued by an older version): log in again")
	errTokenRevoked   = errors.New("token revoked (logged out)")
	errTokenUserGone  = errors.New("the token's user may no longer log in")
	errTokenStale     = errors.New("the token's user has changed password or been re-created since it was issued: log in again")
)

// verify checks a token's algorithm, signature and expiry, and that it
// carries an id and a credential binding. checkToken does the rest.
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
	if c.EXP == 0 {
		return c, errTokenNoExpiry
	}
	if now.Unix() >= c.EXP {
		return c, errTokenExpired
	}
	if c.JTI == "" || c.Cred == "" {
		return c, errTokenUnbound
	}
	return c, nil
}

// tokenRefusalReasons label sockmq_bridge_tokens_refused_total.
var tokenRefusalReasons = []string{"invalid", "expired", "no_expiry", "revoked", "stale_credentials", "user_removed"}

// tokenRefusalReason is the metric label of a refusal.
func tokenRefusalReason(err error) string {
	switch {
	case errors.Is(err, errTokenExpired):
		return "expired"
	case errors.Is(err, errTokenNoExpiry):
		return "no_expiry"
	case errors.Is(err, errTokenRevoked):
		return "revoked"
	case errors.Is(err, errTokenStale):
		return "stale_credentials"
	case errors.Is(err, errTokenUserGone):
		return "user_removed"
	}
	return "invalid"
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

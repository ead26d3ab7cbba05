package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"log/slog"
	"sync"
	"sync/atomic"
)

// Result is the outcome of [Service.Authenticate].
type Result uint8

const (
	// NotAuthorized means the client may not connect (MQTT reason code
	// 0x87), for example an anonymous client when anonymous access is off.
	// It is the zero value.
	NotAuthorized Result = iota
	// BadCredentials means the username or password is wrong (MQTT reason
	// code 0x86). Unknown users and wrong passwords are not distinguished.
	BadCredentials
	// Allowed means the client may connect.
	Allowed
)

// String returns "allowed", "bad credentials" or "not authorized".
func (r Result) String() string {
	switch r {
	case Allowed:
		return "allowed"
	case BadCredentials:
		return "bad credentials"
	}
	return "not authorized"
}

// snapshot is one immutable generation of loaded rules.
type snapshot struct {
	anonymous bool
	hashes    map[string]*pwHash // nil when no password file is configured
	acl       *ACL               // nil when no ACL file is configured
	fake      *pwHash
	fakeIter  int
	cache     *credCache
	pwSum     [sha256.Size]byte
	aclSum    [sha256.Size]byte
}

// Service authenticates clients and authorizes topic access from a password
// file and an ACL file. It is safe for concurrent use; see the package
// documentation for the concurrency contract.
type Service struct {
	cfg      Config
	log      *slog.Logger
	cacheKey []byte
	cur      atomic.Pointer[snapshot]

	mu        sync.Mutex // serializes reloads; guards callbacks
	callbacks []func()
}

// New loads cfg's files and returns a ready Service. A nil log discards log
// output. Errors name the config key, as [Config.Validate] does.
func New(cfg Config, log *slog.Logger) (*Service, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log.With("component", "auth"), cacheKey: make([]byte, 32)}
	rand.Read(s.cacheKey)
	snap, err := cfg.load()
	if err != nil {
		return nil, err
	}
	snap.cache = newCredCache(s.cacheKey)
	s.cur.Store(snap)
	anon := cfg.anonymousAllowed()
	switch {
	case cfg.PasswordFile == "" && !anon:
		s.log.Warn("no password file and anonymous access off: every client will be refused")
	case cfg.PasswordFile == "" && cfg.ACLFile != "":
		s.log.Warn("ACL file without password file: usernames are not verified, so any client can claim any user's ACL rules")
	case cfg.PasswordFile == "" && cfg.ACLFile == "":
		s.log.Warn("no password file and no ACL file: every client may read and write every topic")
	}
	s.log.Info("auth loaded", "users", len(snap.hashes), "acl_rules", snap.aclRules(),
		"allow_anonymous", anon, "password_file", cfg.PasswordFile, "acl_file", cfg.ACLFile)
	return s, nil
}

func (sn *snapshot) aclRules() int {
	if sn.acl == nil {
		return 0
	}
	return sn.acl.Rules()
}

// Authenticate decides whether a client may connect.
//
//   - No username: the client is anonymous and gets [Allowed] if anonymous
//     access is on, else [NotAuthorized].
//   - Username, password file configured: the password is verified;
//     unknown user, missing password and wrong password all give
//     [BadCredentials], and an unknown user costs the same as a wrong
//     password. A client that gives a username must authenticate even when
//     anonymous access is on.
//   - Username, no password file: as mosquitto does, the username is
//     accepted unverified (the password is ignored) when anonymous access
//     is on; otherwise [NotAuthorized].
//
// Authenticate never logs the password.
func (s *Service) Authenticate(username string, password []byte, hasUsername, hasPassword bool) Result {
	sn := s.cur.Load()
	if !hasUsername {
		if sn.anonymous {
			return Allowed
		}
		return NotAuthorized
	}
	if sn.hashes == nil {
		if sn.anonymous {
			return Allowed
		}
		return NotAuthorized
	}
	if !hasPassword {
		return BadCredentials
	}
	h, ok := sn.hashes[username]
	if !ok {
		sn.fake.verify(password) // same cost as a real $7$ check
		return BadCredentials
	}
	d := sn.cache.digest(username, password, h.raw)
	if sn.cache.has(d) {
		return Allowed
	}
	if !h.verify(password) {
		return BadCredentials
	}
	sn.cache.add(d)
	return Allowed
}

// Allowed reports whether id may access topic with acc. Without an ACL file
// every access is allowed. It takes no lock and does not allocate. topic
// must be a topic name; a filter with wildcards is refused when an ACL file
// is configured (use [Service.Subscription] for filters).
func (s *Service) Allowed(id Identity, topic string, acc Access) bool {
	sn := s.cur.Load()
	if sn.acl == nil {
		return true
	}
	return sn.acl.Allowed(id, topic, acc)
}

// Subscription decides whether id may subscribe to filter (see
// [ACL.Subscription]). Without an ACL file every valid filter gets
// [SubAllow].
func (s *Service) Subscription(id Identity, filter string) SubDecision {
	sn := s.cur.Load()
	if sn.acl == nil {
		if _, ok := StripShare(filter); !ok {
			return SubDeny
		}
		return SubAllow
	}
	return sn.acl.Subscription(id, filter)
}

// UserExists reports whether username may still authenticate. It is false
// only when a password file is configured and no longer lists the user; the
// broker uses it after a reload to disconnect deleted users.
func (s *Service) UserExists(username string) bool {
	sn := s.cur.Load()
	if sn.hashes == nil {
		return true
	}
	_, ok := sn.hashes[username]
	return ok
}

// CredentialStamp returns a digest of username's password-file entry that
// changes whenever the entry does: a new password, or a deletion followed
// by re-creation, stores a new salt and so gives a new stamp. ok is false
// when a password file is configured and does not list the user. Without
// a password file every user has the same empty stamp. The stamp is the
// SHA-256 of the stored hash, never the hash itself; still, treat it as a
// secret and key it (HMAC) before it reaches a client. The bridge binds its
// login tokens to it.
func (s *Service) CredentialStamp(username string) (stamp []byte, ok bool) {
	sn := s.cur.Load()
	if sn.hashes == nil {
		return nil, true
	}
	h, ok := sn.hashes[username]
	if !ok {
		return nil, false
	}
	sum := sha256.Sum256([]byte(h.raw))
	return sum[:], true
}

// AnonymousAllowed reports whether clients without a username may connect.
func (s *Service) AnonymousAllowed() bool { return s.cur.Load().anonymous }

// Reload re-reads both files. On success it swaps in the new rules (emptying
// the credential cache) and runs the [Service.OnReload] callbacks in
// registration order on the calling goroutine. On error it keeps the
// previous rules, logs the problem and returns it. Concurrent reloads are
// serialized.
func (s *Service) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked()
}

func (s *Service) reloadLocked() error {
	return s.apply(s.cfg.load())
}

// reloadFrom loads the files' content that [Service.Watch] saw settle, not
// what the files hold by now, so that a write starting between the check
// and the load cannot slip a half-written file in.
func (s *Service) reloadFrom(pw, acl fileData) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.apply(s.cfg.build(pw, acl))
}

// apply swaps in a freshly loaded snapshot and runs the callbacks, or keeps
// the previous rules when loading failed. The caller holds s.mu.
func (s *Service) apply(snap *snapshot, err error) error {
	if err != nil {
		s.log.Error("auth reload failed; keeping previous rules", "error", err)
		return err
	}
	snap.cache = newCredCache(s.cacheKey)
	s.cur.Store(snap)
	s.log.Info("auth reloaded", "users", len(snap.hashes), "acl_rules", snap.aclRules())
	for _, fn := range s.callbacks {
		fn()
	}
	return nil
}

// OnReload registers fn to run after each successful reload, for example to
// re-check connected clients and their subscriptions. fn runs on the
// reloading goroutine while further reloads wait; it must not call Reload
// or OnReload.
func (s *Service) OnReload(fn func()) {
	s.mu.Lock()
	s.callbacks = append(s.callbacks, fn)
	s.mu.Unlock()
}

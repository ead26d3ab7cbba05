package auth

import (
	"path/filepath"
	"testing"
)

func BenchmarkAllowed(b *testing.B) {
	a := mustACL(b, testACL)
	s := &Service{}
	s.cur.Store(&snapshot{acl: a})
	alice := Identity{Username: "alice", ClientID: "a1"}
	b.ReportAllocs()
	for b.Loop() {
		s.Allowed(alice, "users/alice/inbox", Read) // pattern grant, after all denies
	}
}

func BenchmarkAllowedDenied(b *testing.B) {
	a := mustACL(b, testACL)
	alice := Identity{Username: "alice", ClientID: "a1"}
	b.ReportAllocs()
	for b.Loop() {
		a.Allowed(alice, "nothing/granted/here", Read) // walks every rule
	}
}

func BenchmarkSubscription(b *testing.B) {
	a := mustACL(b, testACL)
	alice := Identity{Username: "alice", ClientID: "a1"}
	b.ReportAllocs()
	for b.Loop() {
		a.Subscription(alice, "sensors/+/temp")
	}
}

func benchService(b *testing.B) *Service {
	b.Helper()
	var pf PasswordFile
	pf.Set("alice", "secret", 0)
	path := filepath.Join(b.TempDir(), "passwd")
	if err := pf.Save(path); err != nil {
		b.Fatal(err)
	}
	s, err := New(Config{PasswordFile: path}, nil)
	if err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkAuthenticateCold measures a full $7$ (101 iterations)
// verification: the cost of a first CONNECT.
func BenchmarkAuthenticateCold(b *testing.B) {
	s := benchService(b)
	b.ReportAllocs()
	for b.Loop() {
		sn := s.cur.Load()
		sn.cache = newCredCache(s.cacheKey) // defeat the cache
		if s.Authenticate("alice", []byte("secret"), true, true) != Allowed {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAuthenticateCached measures a reconnect with credentials that
// already passed verification.
func BenchmarkAuthenticateCached(b *testing.B) {
	s := benchService(b)
	s.Authenticate("alice", []byte("secret"), true, true)
	b.ReportAllocs()
	for b.Loop() {
		if s.Authenticate("alice", []byte("secret"), true, true) != Allowed {
			b.Fatal("refused")
		}
	}
}

// BenchmarkAuthenticateUnknownUser shows an unknown user costs a full $7$
// verification, like a wrong password.
func BenchmarkAuthenticateUnknownUser(b *testing.B) {
	s := benchService(b)
	b.ReportAllocs()
	for b.Loop() {
		s.Authenticate("mallory", []byte("secret"), true, true)
	}
}

func BenchmarkAuthenticateWrongPassword(b *testing.B) {
	s := benchService(b)
	b.ReportAllocs()
	for b.Loop() {
		s.Authenticate("alice", []byte("wrong"), true, true)
	}
}

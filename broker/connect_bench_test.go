package broker

import (
	"io"
	"log/slog"
	"math"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/limit"
)

// BenchmarkConnect measures connection establishment over TCP on
// 127.0.0.1: dial, CONNECT, CONNACK, DISCONNECT, until the broker closed
// the connection (client side included). auth=off runs without a password
// file; auth=on checks a password file with $7$ PBKDF2-SHA512 hashes (101
// iterations, mosquitto_passwd's default), where repeated logins hit the
// credential cache; auth=bad-password pays the full hash on every attempt
// (and is refused; the login guard is told not to delay the failures, so
// that the cost of a refusal is what is measured).
func BenchmarkConnect(b *testing.B) {
	cases := []struct {
		name     string
		withAuth bool
		pass     string
		wantCode byte
	}{
		{"auth=off", false, "", 0},
		{"auth=on", true, "secret", 0},
		{"auth=bad-password", true, "wrong", 4},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var authz Authorizer
			user := ""
			if c.withAuth {
				authz = benchAuth(b)
				user = "alice"
			}
			s := benchBroker(b, authz, nil)
			s.SetLoginGuard(limit.NewLoginGuard(limit.LoginGuardConfig{Free: math.MaxInt}))
			addr := s.MQTTAddr()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				rc, code, err := dialMQTT(addr, "c"+strconv.Itoa(i), user, c.pass, true)
				i++
				if err != nil {
					b.Fatal(err)
				}
				if code != c.wantCode {
					b.Fatalf("CONNACK code %d, want %d", code, c.wantCode)
				}
				rc.disconnect()
			}
		})
	}
}

func benchAuth(b *testing.B) *auth.Service {
	b.Helper()
	path := filepath.Join(b.TempDir(), "passwd")
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "secret", auth.DefaultIterations); err != nil {
		b.Fatal(err)
	}
	if err := pf.Save(path); err != nil {
		b.Fatal(err)
	}
	svc, err := auth.New(auth.Config{PasswordFile: path}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

package app_test

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
)

// connectAs connects an MQTT 5 client with a username and password.
func connectAs(t *testing.T, addr, id, user, password string) *testutil.Client5 {
	t.Helper()
	c, _, err := testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{ClientID: id, CleanStart: true,
		Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: true})
	if err != nil {
		t.Fatalf("connect %s as %s: %v", id, user, err)
	}
	return c
}

// The will of a user deleted from the password file is not sent, whether
// the socket was open or its will delayed when the user was deleted; the
// will of a user who lost the right to publish there is not sent either
// (lwt checks at send time). setWill refuses delaySeconds that overflow.
func TestBridgeWillOfDeletedUserIsNotSent(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "passwd")
	save := func(users ...string) {
		t.Helper()
		var pf auth.PasswordFile
		for _, u := range users {
			if _, err := pf.Set(u, "pw-"+u, auth.DefaultIterations); err != nil {
				t.Fatal(err)
			}
		}
		if err := pf.Save(pw); err != nil {
			t.Fatal(err)
		}
	}
	save("alice", "bob", "watcher")
	a := startApp(t, func(c *config.File) { c.Auth.PasswordFile = pw })
	watcher := connectAs(t, a.Broker.MQTTAddr(), "watcher", "watcher", "pw-watcher")
	watcher.Sub(t, "wills/#", 1)

	alice, aliceID := sc(t, a)
	alice.Login("alice", "pw-alice")
	mustOK(t, alice.Invoke("setWill", map[string]any{"channel": "wills/alice", "data": "gone"}), "setWill")
	bob, bobID := sc(t, a)
	bob.Login("bob", "pw-bob")
	mustOK(t, bob.Invoke("setWill", map[string]any{"channel": "wills/bob", "data": "gone", "delaySeconds": 0.2}), "setWill")
	if r := bob.Invoke("setWill", map[string]any{"channel": "wills/bob2", "data": "x", "delaySeconds": 1e10}); testutil.ErrName(r) != "InvalidArgumentsError" {
		t.Errorf("delaySeconds 1e10: %s, want InvalidArgumentsError", r.Error)
	}
	_ = bob.Conn().UnderlyingConn().Close()
	testutil.WaitFor(t, 5*time.Second, func() bool { return a.Wills.Pending() == 1 }, "bob's delayed will pending")

	save("watcher")
	if err := a.Reload(); err != nil {
		t.Fatal(err)
	}
	_ = alice.Conn().UnderlyingConn().Close()
	testutil.WaitFor(t, 5*time.Second, func() bool {
		for _, s := range a.Presence.List() {
			if s.ID == aliceID || s.ID == bobID {
				return false
			}
		}
		return a.Wills.Pending() == 0
	}, "both sockets gone and bob's delay over")
	connectAs(t, a.Broker.MQTTAddr(), "sentinel", "watcher", "pw-watcher").Pub(t, "wills/sentinel", 1, false, "sentinel")
	if m := watcher.Next(t); m.Topic != "wills/sentinel" {
		t.Fatalf("got %s %q: the will of a deleted user was sent", m.Topic, m.Payload)
	}
}

package app_test

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

func inPresence(a *app.App, id string) bool {
	a.Presence.Flush()
	for _, s := range a.Presence.List() {
		if s.ID == id {
			return true
		}
	}
	return false
}

// With anonymous access off, a socket that has not logged in is no
// session: it is not in presence until it logs in, leaves presence when it
// logs out (reason clean), and is then closed after bridge.login_timeout.
func TestAnonymousSocketsStayOutOfPresence(t *testing.T) {
	var pf auth.PasswordFile
	if _, err := pf.Set("alice", "apw", 1); err != nil {
		t.Fatal(err)
	}
	pw := filepath.Join(t.TempDir(), "passwd")
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	no := false
	a := startApp(t, func(c *config.File) {
		c.Auth.PasswordFile, c.Auth.AllowAnonymous = pw, &no
		c.Bridge.LoginTimeout = time.Second
	})
	viewer, _, err := testutil.Connect5(t, testutil.Dial(t, a.Broker.MQTTAddr()), &paho.Connect{
		ClientID: "viewer", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("apw"), PasswordFlag: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	viewer.Sub(t, presence.DisconnectedTopic, 1)

	c, id := sc(t, a)
	// Any answer from the socket's reader comes after its session (if any)
	// was reported.
	if r := c.Invoke("getSessionId", nil); testutil.ErrName(r) != bridge.ErrNameAuth {
		t.Fatalf("anonymous getSessionId answered %s %s", r.Data, r.Error)
	}
	if inPresence(a, id) {
		t.Fatal("a socket that has not logged in is listed in presence")
	}
	c.Login("alice", "apw")
	if !inPresence(a, id) {
		t.Fatal("a logged-in socket is not in presence")
	}
	mustOK(t, c.Invoke("logout", nil), "logout")
	var ev presence.Event
	if err := json.Unmarshal(viewer.Next(t).Payload, &ev); err != nil {
		t.Fatal(err)
	}
	if ev.ID != id || ev.Reason != "clean" {
		t.Fatalf("after logout: disconnected event %+v, want %s with reason clean", ev, id)
	}
	if inPresence(a, id) {
		t.Fatal("a logged-out socket is still in presence")
	}
	if code, _ := c.WaitClose(); code != bridge.CloseLoginTimeout {
		t.Fatalf("logged-out socket closed with %d, want %d", code, bridge.CloseLoginTimeout)
	}
}

package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// The presence procedure lists exactly the sessions whose
// $presence/clients/<id> the caller may read, whether the ACL grants all of
// them, some, or none.
func TestPresenceProcedureFollowsACL(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("pattern read $presence/clients/%c\nuser alice\ntopic read $presence/#\nuser carol\ntopic deny $presence/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	anon := true
	a := startApp(t, func(c *config.File) { c.Auth.ACLFile, c.Auth.AllowAnonymous = acl, &anon })
	testutil.MustConnect5(t, a.Broker.MQTTAddr(), "device-1")
	alice, _ := sc(t, a)
	alice.Login("alice", "x")
	bob, bobID := sc(t, a)
	bob.Login("bob", "x")
	carol, _ := sc(t, a)
	carol.Login("carol", "x")
	testutil.WaitFor(t, 5*time.Second, func() bool { return len(a.Presence.List()) == 4 }, "4 sessions in presence")

	ids := func(c *testutil.SCClient) []string {
		t.Helper()
		var list []presence.Session
		if err := json.Unmarshal(mustOK(t, c.Invoke("presence", nil), "presence").Data, &list); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, s := range list {
			out = append(out, s.ID)
		}
		sort.Strings(out)
		return out
	}
	all := []string{}
	for _, s := range a.Presence.List() {
		all = append(all, s.ID)
	}
	sort.Strings(all)
	for _, tc := range []struct {
		who  string
		c    *testutil.SCClient
		want []string
	}{
		{"alice (reads $presence/#)", alice, all},
		{"bob (reads his own document)", bob, []string{bobID}},
		{"carol (denied $presence/#)", carol, []string{}},
	} {
		if got := ids(tc.c); testutil.MustJSON(got) != testutil.MustJSON(tc.want) {
			t.Errorf("%s sees %v, want %v", tc.who, got, tc.want)
		}
	}
}

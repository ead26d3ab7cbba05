package app_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/presence"
)

// In a cluster the presence procedure lists the sessions of every node,
// still only those whose $presence/clients/<id> the caller may read, and
// a session that ends on another node leaves the list.
func TestClusterPresenceProcedureListsEveryNode(t *testing.T) {
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl")
	if err := os.WriteFile(acl, []byte("pattern read $presence/clients/%c\nuser alice\ntopic read $presence/#\nuser carol\ntopic deny $presence/#\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	anon := true
	mutate := func(c *config.File) { c.Bridge.Enabled, c.Auth.ACLFile, c.Auth.AllowAnonymous = true, acl, &anon }
	s := startJetStream(t)
	a := startNode(t, s, "a", mutate)
	b := startNode(t, s, "b", mutate)
	c := startNode(t, s, "c", mutate)

	dev := testutil.MustConnect5(t, a.Broker.MQTTAddr(), "device-1")
	sock, sockID := sc(t, a)
	_ = sock
	bob, bobID := sc(t, c)
	bob.Login("bob", "x")
	alice, aliceID := sc(t, b)
	alice.Login("alice", "x")
	carol, carolID := sc(t, b)
	carol.Login("carol", "x")

	ids := func(cl *testutil.SCClient) []string {
		t.Helper()
		var list []presence.Session
		if err := json.Unmarshal(mustOK(t, cl.Invoke("presence", nil), "presence").Data, &list); err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, s := range list {
			out = append(out, s.ID)
		}
		sort.Strings(out)
		return out
	}
	all := []string{"device-1", sockID, bobID, aliceID, carolID}
	sort.Strings(all)
	testutil.WaitFor(t, 10*time.Second, func() bool { return slices.Equal(ids(alice), all) }, "alice on b lists the sessions of a, b and c")
	for _, tc := range []struct {
		who  string
		cl   *testutil.SCClient
		want []string
	}{
		{"bob on c (reads his own document)", bob, []string{bobID}},
		{"carol on b (denied $presence/#)", carol, []string{}},
	} {
		if got := ids(tc.cl); !slices.Equal(got, tc.want) {
			t.Errorf("%s sees %v, want %v", tc.who, got, tc.want)
		}
	}

	dev.Drop()
	want := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == "device-1" })
	testutil.WaitFor(t, 10*time.Second, func() bool { return slices.Equal(ids(alice), want) }, "device-1 leaves the list on b after disconnecting from a")
}

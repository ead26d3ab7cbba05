package broker_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/testutil"
)

// An editor saving the ACL file in place (truncate, then write it back in
// small pieces over about a second) must not make the broker load a
// half-written file: an empty or partial ACL denies everything, and the
// revocation after such a reload would remove alice's subscription for
// good. Only the settled file is loaded; the subscription survives and the
// new rule applies.
func TestACLRewrittenInPlaceKeepsSubscriptions(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	alice := mustLogin5(t, addr, "alice", "alice", "apass")
	alice.Sub(t, "sensors/+", 1)
	bob := mustLogin5(t, addr, "bob", "bob", "bpass")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.svc.Watch(ctx, 50*time.Millisecond)

	newACL := strings.Replace(testACL, "topic write allowed\n", "topic write allowed\ntopic read news/#\n", 1)
	fh, err := os.OpenFile(f.aclPath, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		t.Fatal(err)
	}
	pace := time.NewTicker(40 * time.Millisecond) // the editor's pace: ~25 writes over a second
	for rest := newACL; rest != ""; {
		<-pace.C
		n := min(len(rest), (len(newACL)+24)/25)
		if _, err := fh.WriteString(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	pace.Stop()
	fh.Close()
	alice5 := auth.Identity{Username: "alice", ClientID: "alice"}
	testutil.WaitFor(t, 5*time.Second, func() bool { return f.svc.Allowed(alice5, "news/today", auth.Read) }, "the rewritten ACL to be loaded")

	bob.Pub(t, "sensors/room1", 1, false, "still subscribed")
	if m := alice.Next(t); m.Topic != "sensors/room1" || string(m.Payload) != "still subscribed" {
		t.Fatalf("alice got %s %q, want sensors/room1: her subscription did not survive the rewrite", m.Topic, m.Payload)
	}
}

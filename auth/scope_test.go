package auth

import "testing"

func TestReadScopeUnder(t *testing.T) {
	a := mustACL(t, testACL)
	alice := Identity{Username: "alice", ClientID: "a1"}
	tests := []struct {
		id     Identity
		prefix string
		want   SubDecision
	}{
		{alice, "alice", SubAllow},
		{alice, "alice/x/y", SubAllow},
		{alice, "sensors", SubPartial},
		{alice, "sensors/private", SubDeny},
		{alice, "secret", SubDeny},
		{alice, "users", SubPartial},
		{alice, "users/alice", SubAllow},
		{alice, "users/bob", SubDeny},
		{alice, "cmd", SubDeny}, // write only
		{Identity{Username: "carol", ClientID: "c1"}, "anything", SubAllow},
		{Identity{Username: "carol", ClientID: "c1"}, "$SYS", SubDeny},
		{Identity{Username: "dave", ClientID: "d1"}, "$SYS", SubAllow},
		{Identity{ClientID: "anon1", Anonymous: true}, "public", SubPartial},
		{Identity{Username: "x/#", ClientID: "e1"}, "users", SubDeny},
	}
	for _, tc := range tests {
		if got := a.ReadScope(tc.id).Under(tc.prefix); got != tc.want {
			t.Errorf("%s under %q: %v, want %v", tc.id.Username, tc.prefix, got, tc.want)
		}
	}
	var none *ReadScope
	if none.Under("x") != SubAllow {
		t.Error("a nil scope (no ACL) must allow everything")
	}
}

// Under must agree with Allowed: SubDeny only where nothing below is
// readable, SubAllow only where everything below is.
func TestReadScopeAgreesWithAllowed(t *testing.T) {
	a := mustACL(t, testACL+"pattern deny users/%u/private/#\n")
	levels := []string{"alice", "sensors", "private", "public", "secret", "users", "clients", "inbox", "devices", "$SYS", "", "a1"}
	// below returns p and the topics up to two levels below it.
	below := func(p string) []string {
		out := []string{p}
		for _, l := range levels {
			out = append(out, p+"/"+l)
			for _, m := range levels {
				out = append(out, p+"/"+l+"/"+m)
			}
		}
		return out
	}
	prefixes := append([]string(nil), levels...)
	for _, l := range levels {
		for _, m := range levels {
			prefixes = append(prefixes, l+"/"+m)
		}
	}
	ids := []Identity{
		{Username: "alice", ClientID: "a1"}, {Username: "bob", ClientID: "b1"}, {Username: "carol", ClientID: "c1"},
		{Username: "dave", ClientID: "d1"}, {ClientID: "anon1", Anonymous: true}, {Username: "+", ClientID: "+"},
	}
	for _, id := range ids {
		sc := a.ReadScope(id)
		for _, p := range prefixes {
			d := sc.Under(p)
			for _, topic := range below(p) {
				if topic == "" {
					continue // not a topic name
				}
				ok := a.Allowed(id, topic, Read)
				if d == SubDeny && ok {
					t.Fatalf("%+v: Under(%q) = deny but %q is readable", id, p, topic)
				}
				if d == SubAllow && !ok {
					t.Fatalf("%+v: Under(%q) = allow but %q is not readable", id, p, topic)
				}
			}
		}
	}
}

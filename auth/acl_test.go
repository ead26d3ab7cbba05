package auth

import (
	"errors"
	"strings"
	"testing"
)

const testACL = `# anonymous clients (before any user line)
topic read public/#
topic deny public/secret

# patterns apply to everyone
pattern readwrite users/%u/#
pattern read clients/%c/inbox
pattern write devices/%c/status

user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#
topic write cmd/+

user bob
topic a/+
topic read shared
topic write  spaced topic/x

user carol
topic read #

user dave
topic read $SYS/#

user alice
topic read extra
`

func mustACL(t testing.TB, s string) *ACL {
	t.Helper()
	a, err := ParseACL(strings.NewReader(s))
	if err != nil {
		t.Fatalf("ParseACL: %v", err)
	}
	return a
}

func TestACLAllowed(t *testing.T) {
	a := mustACL(t, testACL)
	anon := Identity{ClientID: "anon1", Anonymous: true}
	alice := Identity{Username: "alice", ClientID: "a1"}
	bob := Identity{Username: "bob", ClientID: "b1"}
	carol := Identity{Username: "carol", ClientID: "c1"}
	dave := Identity{Username: "dave", ClientID: "d1"}
	stranger := Identity{Username: "stranger", ClientID: "s1"}
	evilUser := Identity{Username: "x/#", ClientID: "e1"}
	evilPlus := Identity{Username: "+", ClientID: "+"}
	tests := []struct {
		name  string
		id    Identity
		topic string
		acc   Access
		want  bool
	}{
		{"anon reads public", anon, "public/news", Read, true},
		{"anon reads public parent", anon, "public", Read, true},
		{"anon cannot write public", anon, "public/news", Write, false},
		{"anon deny wins", anon, "public/secret", Read, false},
		{"anon gets no user rules", anon, "alice/x", Read, false},
		{"anon pattern %c", anon, "clients/anon1/inbox", Read, true},
		{"anon pattern %u never matches", anon, "users//x", Read, false},
		{"anon pattern %u literal", anon, "users/%u/x", Read, false},
		{"user does not get anon rules", alice, "public/news", Read, false},
		{"alice rw own", alice, "alice/x/y", Write, true},
		{"alice rw parent", alice, "alice", Read, true},
		{"alice read sensors", alice, "sensors/1/temp", Read, true},
		{"alice cannot write sensors", alice, "sensors/1/temp", Write, false},
		{"alice deny private", alice, "sensors/private/x", Read, false},
		{"alice deny private parent", alice, "sensors/private", Read, false},
		{"alice write cmd/+", alice, "cmd/go", Write, true},
		{"alice cmd/+ one level only", alice, "cmd/go/now", Write, false},
		{"alice cmd read not granted", alice, "cmd/go", Read, false},
		{"alice merged block", alice, "extra", Read, true},
		{"alice pattern %u", alice, "users/alice/inbox", Write, true},
		{"alice pattern other user", alice, "users/bob/inbox", Read, false},
		{"alice pattern %c", alice, "clients/a1/inbox", Read, true},
		{"alice pattern %c other", alice, "clients/b1/inbox", Read, false},
		{"alice pattern write-only", alice, "devices/a1/status", Write, true},
		{"alice pattern write-only read", alice, "devices/a1/status", Read, false},
		{"readwrite needs both bits", alice, "devices/a1/status", Read | Write, false},
		{"readwrite both bits ok", alice, "alice/x", Read | Write, true},
		{"no access requested", alice, "alice/x", 0, false},
		{"bob default readwrite", bob, "a/b", Write, true},
		{"bob a/+ not a", bob, "a", Read, false},
		{"bob a/+ not a/b/c", bob, "a/b/c", Read, false},
		{"literal is not a prefix", bob, "shared/secret", Read, false},
		{"literal exact", bob, "shared", Read, true},
		{"topic with space", bob, "spaced topic/x", Write, true},
		{"carol # reads all", carol, "any/thing", Read, true},
		{"carol # not $SYS", carol, "$SYS/broker/uptime", Read, false},
		{"dave $SYS", dave, "$SYS/broker/uptime", Read, true},
		{"unknown user gets only patterns", stranger, "users/stranger/x", Read, true},
		{"unknown user no topic rules", stranger, "alice/x", Read, false},
		{"wildcard topic refused", carol, "any/#", Read, false},
		{"plus topic refused", carol, "+", Read, false},
		{"empty topic refused", carol, "", Read, false},
		{"evil username cannot widen", evilUser, "users/x/anything", Read, false},
		{"evil username literal", evilUser, "users/x/#/a", Read, false},
		{"plus username", evilPlus, "users/anything/x", Read, false},
		{"plus client id", evilPlus, "clients/anything/inbox", Read, false},
	}
	for _, tt := range tests {
		if got := a.Allowed(tt.id, tt.topic, tt.acc); got != tt.want {
			t.Errorf("%s: Allowed(%+v, %q, %v) = %v, want %v", tt.name, tt.id, tt.topic, tt.acc, got, tt.want)
		}
	}
}

func TestACLDenyPatternUnsafeIdentity(t *testing.T) {
	a := mustACL(t, "pattern deny private/%u/#\npattern read #\n")
	ok := Identity{Username: "alice", ClientID: "c"}
	evil := Identity{Username: "a/b", ClientID: "c"}
	if !a.Allowed(ok, "news", Read) || a.Allowed(ok, "private/alice/x", Read) || !a.Allowed(ok, "private/bob/x", Read) {
		t.Error("deny pattern misapplied for a safe identity")
	}
	if a.Allowed(evil, "news", Read) {
		t.Error("an unsafe identity must be denied everything when a deny pattern uses its placeholder")
	}
	if got := a.Subscription(evil, "news"); got != SubDeny {
		t.Errorf("Subscription = %v, want deny", got)
	}
}

func TestACLSubscription(t *testing.T) {
	a := mustACL(t, `
topic read pub/#
user s
topic read sensors/#
user p
topic read a/+
user d
topic read data/#
topic deny data/secret/#
user w
topic write only/#
user root
topic read #
user sys
topic readwrite $SYS/#
pattern read users/%u/#
`)
	s := Identity{Username: "s", ClientID: "c"}
	p := Identity{Username: "p", ClientID: "c"}
	d := Identity{Username: "d", ClientID: "c"}
	w := Identity{Username: "w", ClientID: "c"}
	root := Identity{Username: "root", ClientID: "c"}
	sys := Identity{Username: "sys", ClientID: "c"}
	anon := Identity{ClientID: "c", Anonymous: true}
	tests := []struct {
		id     Identity
		filter string
		want   SubDecision
	}{
		{s, "#", SubPartial},
		{s, "sensors/+/temp", SubAllow},
		{s, "sensors/#", SubAllow},
		{s, "sensors", SubAllow},
		{s, "other/#", SubDeny},
		{s, "+/x", SubPartial},
		{s, "$share/g/sensors/#", SubAllow},
		{s, "$share/g/#", SubPartial},
		{s, "$share/g/other", SubDeny},
		{s, "$share/g", SubDeny},
		{s, "$share//sensors/#", SubDeny},
		{s, "sensors/#/x", SubDeny}, // invalid
		{s, "", SubDeny},
		{s, "users/s/#", SubAllow}, // pattern
		{s, "users/+/#", SubPartial},
		{p, "a/#", SubPartial},
		{p, "a/+", SubAllow},
		{p, "a", SubDeny},
		{p, "a/b/c", SubDeny},
		{d, "data/#", SubPartial},
		{d, "data/public/#", SubAllow},
		{d, "data/secret/x", SubDeny},
		{d, "data/secret/#", SubDeny},
		{d, "data/+/x", SubPartial},
		{w, "only/#", SubDeny}, // write-only grants nothing to read
		{root, "#", SubAllow},
		{root, "$SYS/#", SubDeny},
		{root, "+/+", SubAllow},
		{sys, "$SYS/#", SubAllow},
		{sys, "#", SubPartial}, // via the users/%u/# pattern
		{sys, "+/x/#", SubDeny},
		{anon, "pub/#", SubAllow},
		{anon, "#", SubPartial},
		{anon, "users/+/#", SubDeny},
	}
	for _, tt := range tests {
		if got := a.Subscription(tt.id, tt.filter); got != tt.want {
			t.Errorf("Subscription(%s, %q) = %v, want %v", tt.id.Username, tt.filter, got, tt.want)
		}
	}
}

func TestParseACLErrors(t *testing.T) {
	_, err := ParseACL(strings.NewReader("topic read a\nuser\nbogus x\ntopic read\ntopic deny a/#/b\npattern write x+\n# fine\ntopic a"))
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want *ParseError", err)
	}
	var lines []int
	for _, le := range pe.Lines {
		lines = append(lines, le.Line)
	}
	want := []int{2, 3, 4, 5, 6}
	if len(lines) != len(want) {
		t.Fatalf("error lines = %v, want %v (%v)", lines, want, err)
	}
	for i := range want {
		if lines[i] != want[i] {
			t.Fatalf("error lines = %v, want %v", lines, want)
		}
	}
	if !strings.Contains(err.Error(), "line 3: unknown keyword \"bogus\"") {
		t.Errorf("message %q does not name line 3", err)
	}
}

func TestParseACLAccessWords(t *testing.T) {
	a := mustACL(t, "user u\ntopic read r\ntopic write w\ntopic readwrite rw\ntopic deny d\ntopic plain\r\n\ttopic   read   tabbed  \n")
	u := Identity{Username: "u"}
	checks := []struct {
		topic string
		acc   Access
		want  bool
	}{
		{"r", Read, true}, {"r", Write, false},
		{"w", Write, true}, {"w", Read, false},
		{"rw", Read | Write, true},
		{"d", Read, false}, {"d", Write, false},
		{"plain", Read | Write, true},
		{"tabbed", Read, true},
	}
	for _, c := range checks {
		if got := a.Allowed(u, c.topic, c.acc); got != c.want {
			t.Errorf("Allowed(%q, %v) = %v, want %v", c.topic, c.acc, got, c.want)
		}
	}
	if a.Rules() != 6 {
		t.Errorf("Rules() = %d, want 6", a.Rules())
	}
}

func TestACLAllowedZeroAlloc(t *testing.T) {
	a := mustACL(t, testACL)
	alice := Identity{Username: "alice", ClientID: "a1"}
	n := testing.AllocsPerRun(1000, func() {
		a.Allowed(alice, "users/alice/inbox", Read)
		a.Allowed(alice, "sensors/1/temp", Read)
		a.Allowed(alice, "nothing/here", Write)
	})
	if n != 0 {
		t.Errorf("Allowed allocates %v times per run, want 0", n)
	}
}

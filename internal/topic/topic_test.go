package topic

import (
	"errors"
	"strings"
	"testing"
)

func TestMatch(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"allowed", "allowed/secret", false}, // mochi's prefix bypass must not exist
		{"allowed", "allowed", true},
		{"a/b", "a", false},
		{"a/#", "a", true}, // '#' includes the parent level
		{"a/#", "a/b/c", true},
		{"a/#", "a/", true},
		{"a/#", "ab", false},
		{"a/#", "b/a", false},
		{"#", "a", true},
		{"#", "/", true},
		{"#", "a/b/c", true},
		{"a/+", "a/b", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/+", "a/", true}, // '+' matches an empty level
		{"+", "a", true},
		{"+", "a/b", false},
		{"+/+", "/a", true},
		{"+/+", "/", true},
		{"/+", "/a", true},
		{"/+", "a", false},
		{"+/b", "a/b", true},
		{"a/+/c", "a/b/c", true},
		{"a/+/c", "a//c", true},
		{"a/+/c", "a/b/d", false},
		{"a/+/#", "a/b", true},
		{"a/+/#", "a", false},
		{"a//b", "a//b", true},
		{"a//b", "a/b", false},
		{"$SYS/#", "$SYS/broker/uptime", true},
		{"$SYS/#", "$SYS", true},
		{"#", "$SYS/broker", false},
		{"+/broker", "$SYS/broker", false},
		{"+", "$SYS", false},
		{"$SYS/+", "$SYS/x", true},
		{"a/$x", "a/$x", true},
		{"+/$x", "a/$x", true},
		{"#", "", false},
		{"", "a", false},
		{"a/b/", "a/b/", true},
		{"a/b/", "a/b", false},
	}
	for _, tt := range tests {
		if got := Match(tt.filter, tt.topic); got != tt.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValid(t *testing.T) {
	valid := []string{"a", "#", "+", "a/#", "a/+/b", "/", "+/+", "$SYS/#", "a//b", "$share/g/a", "$share/g/#"}
	invalid := []string{"", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "##", "a/++", "\xff", "a\x00b",
		"$share/g", "$share//a", "$share/g+/a", "$share/g/", "$share", strings.Repeat("a", MaxLen+1)}
	for _, f := range valid {
		if err := ValidFilter(f); err != nil {
			t.Errorf("ValidFilter(%q) = %v, want nil", f, err)
		}
	}
	for _, f := range invalid {
		if err := ValidFilter(f); !errors.Is(err, ErrInvalidFilter) {
			t.Errorf("ValidFilter(%q) = %v, want ErrInvalidFilter", f, err)
		}
	}
	for _, n := range []string{"a/b", "/", "$SYS/x", "a//b"} {
		if err := ValidName(n); err != nil {
			t.Errorf("ValidName(%q) = %v", n, err)
		}
	}
	for _, n := range []string{"", "a/+", "#", "\xff", "a\x00", strings.Repeat("a", MaxLen+1)} {
		if err := ValidName(n); !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidName(%q) = %v, want ErrInvalidName", n, err)
		}
	}
}

func TestShared(t *testing.T) {
	g, f, ok := SplitShared("$share/grp/a/+/c")
	if !ok || g != "grp" || f != "a/+/c" {
		t.Fatalf("SplitShared = %q %q %v", g, f, ok)
	}
	if _, _, ok := SplitShared("$sharex/g/a"); ok {
		t.Fatal("$sharex is not a shared subscription")
	}
	if !IsFilter("$share/g/a") || !IsFilter("a/+") || IsFilter("a/b") {
		t.Fatal("IsFilter wrong")
	}
}

func TestNamespaces(t *testing.T) {
	for _, tt := range []struct {
		topic                        string
		brokerOnly, volatile, hidden bool
	}{
		{"$SYS/broker/uptime", true, true, false},
		{"$SYS", true, true, false},
		{"$presence/clients/x", true, true, false},
		{"$sockmq/dropped-will", true, false, true},
		{"$SYSTEM/x", false, false, false},
		{"$presences", false, false, false},
		{"a/$SYS", false, false, false},
		{"sensors/1", false, false, false},
	} {
		if BrokerOnly(tt.topic) != tt.brokerOnly || Volatile(tt.topic) != tt.volatile || Hidden(tt.topic) != tt.hidden {
			t.Errorf("%q: brokerOnly %v volatile %v hidden %v, want %v %v %v", tt.topic,
				BrokerOnly(tt.topic), Volatile(tt.topic), Hidden(tt.topic), tt.brokerOnly, tt.volatile, tt.hidden)
		}
	}
	if !ReservedClientID("$abc") || ReservedClientID("abc") {
		t.Fatal("ReservedClientID wrong")
	}
}

func TestIntersectsCovers(t *testing.T) {
	tests := []struct {
		r, f              string
		intersect, covers bool
	}{
		{"sensors/#", "#", true, false},
		{"sensors/#", "sensors/+/temp", true, true},
		{"sensors/#", "other/#", false, false},
		{"sensors/#", "sensors", true, true},
		{"sensors/#", "sensors/#", true, true},
		{"a/+", "a/#", true, false},
		{"a/+", "a/+", true, true},
		{"a/+", "a/b", true, true},
		{"a/+", "a", false, false},
		{"a/+", "a/b/c", false, false},
		{"a/+", "+/b", true, false},
		{"a/b", "a/+", true, false},
		{"a/b", "a/b", true, true},
		{"a/b", "a/b/#", true, false},
		{"a", "a/#", true, false},
		{"a/#", "a", true, true},
		{"#", "$SYS/#", false, false},
		{"+/#", "$SYS/x", false, false},
		{"#", "#", true, true},
		{"#", "+/x", true, true},
		{"#", "a/b", true, true},
		{"$SYS/#", "#", false, false},
		{"$SYS/#", "$SYS/+", true, true},
		{"+", "#", true, false},
		{"+/+", "a/#", true, false},
		{"+/#", "a/#", true, true},
		{"+/#", "a", true, true},
		{"a/+/c", "a/b/+", true, false},
		{"a/+/c", "+/b/c", true, false},
		{"x/y", "a/#", false, false},
		{"a/b/c", "a/+/c/d", false, false},
	}
	for _, tt := range tests {
		if got := Intersects(tt.r, tt.f); got != tt.intersect {
			t.Errorf("Intersects(%q, %q) = %v, want %v", tt.r, tt.f, got, tt.intersect)
		}
		if got := Intersects(tt.f, tt.r); got != tt.intersect {
			t.Errorf("Intersects(%q, %q) = %v, want %v (symmetry)", tt.f, tt.r, got, tt.intersect)
		}
		if got := Covers(tt.r, tt.f); got != tt.covers {
			t.Errorf("Covers(%q, %q) = %v, want %v", tt.r, tt.f, got, tt.covers)
		}
	}
}

// TestFilterRelationsAgainstTopics checks Intersects and Covers against
// brute-force enumeration over a small topic universe.
func TestFilterRelationsAgainstTopics(t *testing.T) {
	levels := []string{"a", "b", "", "$x"}
	var topics []string
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		if depth == 0 {
			return
		}
		for _, l := range levels {
			tp := l
			if prefix != "" || depth < 4 {
				tp = prefix + "/" + l
			}
			if depth == 4 {
				tp = l
			}
			if tp != "" {
				topics = append(topics, tp)
			}
			gen(tp, depth-1)
		}
	}
	gen("", 4)
	filterLevels := []string{"a", "b", "", "$x", "+", "#"}
	var filters []string
	for _, l1 := range filterLevels {
		filters = append(filters, l1)
		for _, l2 := range filterLevels {
			filters = append(filters, l1+"/"+l2)
			for _, l3 := range []string{"a", "+", "#"} {
				filters = append(filters, l1+"/"+l2+"/"+l3)
			}
		}
	}
	var valid []string
	for _, f := range filters {
		if ValidFilter(f) == nil {
			valid = append(valid, f)
		}
	}
	// Topics deeper than any filter matter only to '#'; depth 4 suffices.
	for _, r := range valid {
		for _, f := range valid {
			inter, cover := false, true
			for _, tp := range topics {
				mr, mf := Match(r, tp), Match(f, tp)
				if mr && mf {
					inter = true
				}
				if mf && !mr {
					cover = false
				}
			}
			if got := Intersects(r, f); got != inter {
				t.Errorf("Intersects(%q, %q) = %v, brute force %v", r, f, got, inter)
			}
			if got := Covers(r, f); got != cover {
				t.Errorf("Covers(%q, %q) = %v, brute force %v", r, f, got, cover)
			}
		}
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if !Match("sensors/+/temp/#", "sensors/room1/temp/celsius/raw") {
			b.Fatal("no match")
		}
	}
}

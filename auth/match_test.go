package auth

import "testing"

func TestMatchTopic(t *testing.T) {
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
		if got := MatchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("MatchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestValidFilter(t *testing.T) {
	valid := []string{"a", "#", "+", "a/#", "a/+/b", "/", "+/+", "$SYS/#", "a//b", "%u/#", "$share/g/a"}
	invalid := []string{"", "a#", "a/#/b", "a+", "a/b+/c", "#/a", "##", "a/++", "\xff", "a\x00b"}
	for _, f := range valid {
		if !ValidFilter(f) {
			t.Errorf("ValidFilter(%q) = false, want true", f)
		}
	}
	for _, f := range invalid {
		if ValidFilter(f) {
			t.Errorf("ValidFilter(%q) = true, want false", f)
		}
	}
	if !ValidTopic("a/b") || ValidTopic("a/+") || ValidTopic("#") || ValidTopic("") {
		t.Error("ValidTopic wrong")
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
		if ValidFilter(f) {
			valid = append(valid, f)
		}
	}
	// Topics deeper than any filter matter only to '#'; depth 4 suffices.
	for _, r := range valid {
		for _, f := range valid {
			inter, cover := false, true
			for _, tp := range topics {
				mr, mf := MatchTopic(r, tp), MatchTopic(f, tp)
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

func TestLevelEqSubst(t *testing.T) {
	tests := []struct {
		p, l, u, c string
		want       bool
	}{
		{"%u", "alice", "alice", "c1", true},
		{"%u", "alic", "alice", "c1", false},
		{"x%u-%c", "xalice-c1", "alice", "c1", true},
		{"x%u-%c", "xalice-c2", "alice", "c1", false},
		{"%%u", "%alice", "alice", "c1", true},
		{"plain", "plain", "", "", true},
		{"%d", "%d", "a", "b", true},
	}
	for _, tt := range tests {
		if got := levelEqSubst(tt.p, tt.l, tt.u, tt.c); got != tt.want {
			t.Errorf("levelEqSubst(%q,%q,%q,%q) = %v", tt.p, tt.l, tt.u, tt.c, got)
		}
		if got := substitute(tt.p, tt.u, tt.c) == tt.l; got != tt.want {
			t.Errorf("substitute(%q) = %q mismatch", tt.p, substitute(tt.p, tt.u, tt.c))
		}
	}
}

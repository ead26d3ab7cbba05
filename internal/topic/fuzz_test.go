package topic

import (
	"strings"
	"testing"
)

// FuzzFilterRelations checks Intersects and Covers against Match on
// fuzzed filters and topics.
func FuzzFilterRelations(f *testing.F) {
	f.Add("a/+", "a/#", "a/b")
	f.Add("#", "$SYS/#", "$SYS/x")
	f.Add("+/#", "/#", "/")
	f.Fuzz(func(t *testing.T, r, fl, topic string) {
		if ValidFilter(r) != nil || ValidFilter(fl) != nil || ValidName(topic) != nil ||
			strings.HasPrefix(r, SharePrefix) || strings.HasPrefix(fl, SharePrefix) {
			return
		}
		mr, mf := Match(r, topic), Match(fl, topic)
		if mr && mf && !Intersects(r, fl) {
			t.Fatalf("%q and %q both match %q but Intersects is false", r, fl, topic)
		}
		if mf && !mr && Covers(r, fl) {
			t.Fatalf("Covers(%q, %q) but %q matches only the second", r, fl, topic)
		}
	})
}

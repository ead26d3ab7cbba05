package broker

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// retainedTopics lists the topics the store returns for filter, sorted.
func retainedTopics(r *retainedStore, filter string) []string {
	var out []string
	r.match(filter, nil, func(m *msg, _ bool) bool {
		out = append(out, m.topic)
		return true
	})
	slices.Sort(out)
	return out
}

func retainedMsg(t string) *msg {
	m := newBody(t, []byte("v:"+t))
	m.qos, m.retain, m.created = 1, true, time.Now().UnixMilli()
	return m
}

func TestRetainedTree(t *testing.T) {
	var r retainedStore
	topics := []string{"a", "a/b", "a/b/c", "a/c", "a//x", "/lead", "b/b", "$SYS/up", "$app/x", "a/$d"}
	for _, tp := range topics {
		r.update(tp, retainedMsg(tp), nil)
	}
	if r.count() != len(topics) {
		t.Fatalf("count = %d, want %d", r.count(), len(topics))
	}
	cases := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"/lead", "a", "a//x", "a/$d", "a/b", "a/b/c", "a/c", "b/b"}},
		{"+", []string{"a"}},
		{"a/#", []string{"a", "a//x", "a/$d", "a/b", "a/b/c", "a/c"}},
		{"a/+", []string{"a/$d", "a/b", "a/c"}}, // '$' only matters at the first level
		{"a/+/c", []string{"a/b/c"}},
		{"a/+/+", []string{"a//x", "a/b/c"}},
		{"+/b", []string{"a/b", "b/b"}},
		{"+/+", []string{"/lead", "a/$d", "a/b", "a/c", "b/b"}},
		{"$SYS/#", []string{"$SYS/up"}},
		{"$SYS/up", []string{"$SYS/up"}},
		{"$app/+", []string{"$app/x"}},
		{"+/up", nil}, // wildcards never match '$' topics [MQTT-4.7.2-1]
		{"a/b/c/#", []string{"a/b/c"}},
		{"a/b/c/d", nil},
		{"nope/#", nil},
	}
	for _, c := range cases {
		slices.Sort(c.want)
		if got := retainedTopics(&r, c.filter); !slices.Equal(got, c.want) {
			t.Errorf("match(%q) = %q, want %q", c.filter, got, c.want)
		}
	}

	// Replacing keeps one message per topic and returns the old one.
	first := r.get("a/b")
	var replaced *msg
	r.update("a/b", retainedMsg("a/b"), func(old *msg) { replaced = old })
	if replaced != first || r.get("a/b") == first || r.count() != len(topics) {
		t.Fatalf("replace: old=%p want %p, count %d", replaced, first, r.count())
	}
	// A removal of a missing topic changes nothing and makes no levels.
	r.update("zz/top", nil, nil)
	if _, ok := r.root["zz"]; ok {
		t.Fatal("removing a topic that is not retained created a level")
	}

	// Removing an inner topic keeps its subtree; removing leaves prunes
	// every level they alone used.
	r.update("a/b", nil, nil)
	if got := retainedTopics(&r, "a/b/#"); !slices.Equal(got, []string{"a/b/c"}) {
		t.Fatalf("after removing a/b: a/b/# = %q", got)
	}
	for _, tp := range topics {
		r.update(tp, nil, nil)
	}
	if r.count() != 0 || r.root != nil {
		t.Fatalf("after removing all: count %d, root %v", r.count(), r.root)
	}

	// Early stop.
	for _, tp := range topics {
		r.update(tp, retainedMsg(tp), nil)
	}
	n := 0
	r.match("#", nil, func(*msg, bool) bool { n++; return n < 3 })
	if n != 3 {
		t.Fatalf("visit returned false at 3, visited %d", n)
	}
}

func TestRetainedTreeManyTopics(t *testing.T) {
	var r retainedStore
	const n = 20000
	for i := range n {
		tp := fmt.Sprintf("dev/%d/sensor/%d", i%100, i)
		r.update(tp, retainedMsg(tp), nil)
	}
	if r.count() != n {
		t.Fatalf("count = %d, want %d", r.count(), n)
	}
	if got := len(retainedTopics(&r, "dev/7/sensor/+")); got != n/100 {
		t.Fatalf("dev/7/sensor/+ matched %d, want %d", got, n/100)
	}
	if got := len(retainedTopics(&r, "dev/+/sensor/4242")); got != 1 {
		t.Fatalf("dev/+/sensor/4242 matched %d, want 1", got)
	}
	for i := range n {
		tp := fmt.Sprintf("dev/%d/sensor/%d", i%100, i)
		if m := r.get(tp); m == nil || string(m.payload()) != "v:"+tp {
			t.Fatalf("get(%q) = %v", tp, m)
		}
	}
	// Delete every even topic, then every odd one: the tree must end empty.
	for _, odd := range []int{0, 1} {
		for i := odd; i < n; i += 2 {
			r.update(fmt.Sprintf("dev/%d/sensor/%d", i%100, i), nil, nil)
		}
	}
	if r.count() != 0 || r.root != nil || len(retainedTopics(&r, "#")) != 0 {
		t.Fatalf("tree not empty after deleting every topic: count %d, root len %d", r.count(), len(r.root))
	}
}

// TestRetainedKeysDoNotPinReplacedBodies checks that a level's key is a
// view into the message retained there (or a copy), never into a message
// that was replaced or a removal's topic.
func TestRetainedKeysDoNotPinReplacedBodies(t *testing.T) {
	var r retainedStore
	a := retainedMsg("x/y")
	r.update(a.topic, a, nil)
	b := retainedMsg("x/y/z")
	r.update(b.topic, b, nil)
	c := retainedMsg("x/y")
	r.update(c.topic, c, nil) // replaces a
	for k, slot := range r.root["x"].kids {
		if k != "y" || slot.m != c {
			t.Fatalf("slot %q holds %p, want c", k, slot.m)
		}
		if unsafeStringData(k) != unsafeStringData(c.topic[2:]) {
			t.Fatal("the key of a replaced slot does not view the new message's topic")
		}
	}
	r.update("x/y", nil, nil) // y keeps its kids: its key must be a copy now
	for k := range r.root["x"].kids {
		if unsafeStringData(k) == unsafeStringData(c.topic[2:]) || unsafeStringData(k) == unsafeStringData(a.topic[2:]) {
			t.Fatal("the key of a slot without a message still views a message's topic")
		}
	}
}

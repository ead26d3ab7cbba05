package broker

import (
	"strings"
	"sync"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/topic"
)

// retainedStore holds the retained message of every topic in a tree with
// one level per map, so that a subscription's filter visits only the
// matching part of the tree.
//
// The tree is compact because 100,000s of topics may be retained: a level
// is a map from level name to a 16-byte slot (the message retained there,
// and the next level's map, made only when a deeper topic exists). A slot
// holding a message is keyed by a view into that message's own topic (no
// copy of the name); a slot without one is keyed by a copy, so that a key
// never keeps a replaced message's body alive. Levels left empty by a
// removal are removed.
type retainedStore struct {
	mu   sync.RWMutex
	root rtree
	n    int
}

// rtree is one level of the retained tree.
type rtree map[string]rslot

// rslot is a level name's entry: the message retained at that topic (nil
// if none) and the level below it (nil if none).
type rslot struct {
	m    *msg
	kids rtree
}

// update makes m the retained message of topic t (nil removes it) and
// calls persist with the message it replaced, under the store's lock, so
// that concurrent updates of a topic reach the disk in the order they
// took effect.
func (r *retainedStore) update(t string, m *msg, persist func(old *msg)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.set(t, m)
	if persist != nil {
		persist(old)
	}
}

// replaceIf removes the retained message of t if it is still m (expiry);
// persist runs under the lock when it was removed.
func (r *retainedStore) replaceIf(t string, m *msg, persist func()) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.getLocked(t) != m {
		return false
	}
	r.set(t, nil)
	if persist != nil {
		persist()
	}
	return true
}

// set makes m the retained message of topic t (nil removes it) and
// returns the message it replaced. The caller holds r.mu.
func (r *retainedStore) set(t string, m *msg) (old *msg) {
	if m != nil {
		t = m.topic // keys are views into the message's topic
	}
	if r.root == nil {
		if m == nil {
			return nil
		}
		r.root = make(rtree, 1)
	}
	old = r.root.set(t, 0, m)
	if len(r.root) == 0 {
		r.root = nil
	}
	switch {
	case old == nil && m != nil:
		r.n++
	case old != nil && m == nil:
		r.n--
	}
	return old
}

// set makes m the message of topic t (whose level at offset from is one
// of tr's keys) and returns the one it replaced; a slot left with neither
// a message nor a level below is deleted.
//
// Assigning to an existing string key replaces the key too, so every
// assignment passes the key the slot should have (slotKey).
func (tr rtree) set(t string, from int, m *msg) *msg {
	l, _, more := topic.NextLevel(t[from:])
	slot, ok := tr[l]
	if !ok && m == nil {
		return nil
	}
	var old *msg
	hadKids := slot.kids != nil
	if !more {
		old, slot.m = slot.m, m
	} else {
		if slot.kids == nil {
			if m == nil {
				return nil
			}
			slot.kids = make(rtree, 1)
		}
		old = slot.kids.set(t, from+len(l)+1, m)
		if len(slot.kids) == 0 {
			slot.kids = nil
		}
	}
	switch {
	case slot.m == nil && slot.kids == nil:
		delete(tr, l)
	case !ok || !more:
		// A new slot, or its message changed: re-key it, since the key
		// must not outlive the message it views.
		delete(tr, l)
		tr[slotKey(slot, l, from)] = slot
	case hadKids != (slot.kids != nil):
		tr[slotKey(slot, l, from)] = slot
	}
	return old
}

// slotKey is the key slot is stored under: a view into its message's
// topic, or a copy of level l when it holds none.
func slotKey(slot rslot, l string, from int) string {
	if slot.m != nil {
		return slot.m.topic[from : from+len(l)]
	}
	return strings.Clone(l)
}

// get returns the retained message of topic t.
func (r *retainedStore) get(t string) *msg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.getLocked(t)
}

func (r *retainedStore) getLocked(t string) *msg {
	tr := r.root
	for rest := t; ; {
		l, next, more := topic.NextLevel(rest)
		slot, ok := tr[l]
		if !ok {
			return nil
		}
		if !more {
			return slot.m
		}
		tr, rest = slot.kids, next
	}
}

func (r *retainedStore) count() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.n
}

// match calls visit for every retained message whose topic matches filter
// (not shared) and that scope may read (nil: everything), until visit
// returns false. Subtrees scope cannot read are not entered, so the cost
// follows what the reader may read, not what is retained; check reports
// whether the message lies where the scope allows only some topics (check
// each with the Authorizer). visit runs under the store's read lock and
// must not block.
func (r *retainedStore) match(filter string, scope *auth.ReadScope, visit func(m *msg, check bool) bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	w := rwalk{scope: scope, visit: visit}
	d := auth.SubAllow
	if scope != nil {
		d = auth.SubPartial
		w.path = make([]byte, 0, 128)
	}
	w.match(r.root, filter, d, true)
}

// rwalk is one retained lookup.
type rwalk struct {
	scope *auth.ReadScope
	visit func(*msg, bool) bool
	path  []byte // topic of the level being visited (only kept with a scope)
	done  bool
}

func (w *rwalk) emit(m *msg, d auth.SubDecision) {
	if m != nil && !w.done && !w.visit(m, d == auth.SubPartial) {
		w.done = true
	}
}

// enter decides level l (below a level at path length n) against the
// scope; it returns the decision, SubDeny meaning "skip".
func (w *rwalk) enter(l string, n int, d auth.SubDecision) auth.SubDecision {
	if d != auth.SubPartial {
		return d
	}
	w.path = w.path[:n]
	if n > 0 {
		w.path = append(w.path, '/')
	}
	w.path = append(w.path, l...)
	return w.scope.Under(unsafeString(w.path))
}

// root is true at the first level, where '+' and '#' do not match topics
// starting with '$' [MQTT-4.7.2-1].
func (w *rwalk) match(tr rtree, f string, d auth.SubDecision, root bool) {
	l, next, more := topic.NextLevel(f)
	base := len(w.path)
	visitChild := func(lv string, c rslot) {
		cd := w.enter(lv, base, d)
		if cd == auth.SubDeny || w.done {
			return
		}
		if !more {
			w.emit(c.m, cd)
			return
		}
		if next == "#" {
			w.emit(c.m, cd) // "a/#" matches "a"
		}
		if c.kids != nil {
			w.match(c.kids, next, cd, false)
		}
	}
	switch l {
	case "#":
		w.all(tr, d, root)
	case "+":
		for lv, c := range tr {
			if root && strings.HasPrefix(lv, "$") {
				continue // [MQTT-4.7.2-1]
			}
			visitChild(lv, c)
			if w.done {
				return
			}
		}
	default:
		if c, ok := tr[l]; ok {
			visitChild(l, c)
		}
	}
	w.path = w.path[:base]
}

// all visits every message in tr and below (for '#').
func (w *rwalk) all(tr rtree, d auth.SubDecision, root bool) {
	base := len(w.path)
	for lv, c := range tr {
		if root && strings.HasPrefix(lv, "$") {
			continue // [MQTT-4.7.2-1]
		}
		cd := w.enter(lv, base, d)
		if cd == auth.SubDeny {
			continue
		}
		w.emit(c.m, cd)
		if c.kids != nil {
			w.all(c.kids, cd, false)
		}
		if w.done {
			break
		}
	}
	w.path = w.path[:base]
}

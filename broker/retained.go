package broker

import (
	"strings"
	"sync"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/topic"
)

// retainedStore holds the retained message of every topic in a tree with
// one level per node, so that a subscription's filter visits only the
// matching part of the tree.
type retainedStore struct {
	mu   sync.RWMutex
	root rnode
	n    int
}

type rnode struct {
	parent *rnode
	level  string
	kids   map[string]*rnode
	m      *msg
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

// set makes m the retained message of its topic (nil removes it) and
// returns the message it replaced. The caller holds r.mu.
func (r *retainedStore) set(t string, m *msg) (old *msg) {
	n := &r.root
	for rest := t; ; {
		l, next, more := topic.NextLevel(rest)
		c := n.kids[l]
		if c == nil {
			if m == nil {
				return nil
			}
			if n.kids == nil {
				n.kids = make(map[string]*rnode, 1)
			}
			c = &rnode{parent: n, level: l}
			n.kids[l] = c
		}
		n = c
		if !more {
			break
		}
		rest = next
	}
	old, n.m = n.m, m
	switch {
	case old == nil && m != nil:
		r.n++
	case old != nil && m == nil:
		r.n--
		for n.parent != nil && n.m == nil && len(n.kids) == 0 {
			p := n.parent
			delete(p.kids, n.level)
			if len(p.kids) == 0 {
				p.kids = nil
			}
			n = p
		}
	}
	return old
}

// get returns the retained message of topic t.
func (r *retainedStore) get(t string) *msg {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.getLocked(t)
}

func (r *retainedStore) getLocked(t string) *msg {
	n := &r.root
	for rest := t; ; {
		l, next, more := topic.NextLevel(rest)
		n = n.kids[l]
		if n == nil {
			return nil
		}
		if !more {
			return n.m
		}
		rest = next
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
	w := rwalk{scope: scope, visit: visit, path: make([]byte, 0, 128)}
	d := auth.SubAllow
	if scope != nil {
		d = auth.SubPartial
	}
	w.match(&r.root, filter, d, true)
}

// rwalk is one retained lookup.
type rwalk struct {
	scope *auth.ReadScope
	visit func(*msg, bool) bool
	path  []byte // topic of the node being visited
	done  bool
}

func (w *rwalk) emit(m *msg, d auth.SubDecision) {
	if m != nil && !w.done && !w.visit(m, d == auth.SubPartial) {
		w.done = true
	}
}

// enter decides c (reached from a node at path length n) against the
// scope; it returns the decision, SubDeny meaning "skip".
func (w *rwalk) enter(c *rnode, n int, d auth.SubDecision) auth.SubDecision {
	w.path = w.path[:n]
	if n > 0 {
		w.path = append(w.path, '/')
	}
	w.path = append(w.path, c.level...)
	if d == auth.SubPartial {
		d = w.scope.Under(unsafeString(w.path))
	}
	return d
}

func (w *rwalk) match(n *rnode, f string, d auth.SubDecision, root bool) {
	l, next, more := topic.NextLevel(f)
	base := len(w.path)
	visitChild := func(c *rnode) {
		cd := w.enter(c, base, d)
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
		w.match(c, next, cd, false)
	}
	switch l {
	case "#":
		w.all(n, d, root)
	case "+":
		for lv, c := range n.kids {
			if root && strings.HasPrefix(lv, "$") {
				continue // [MQTT-4.7.2-1]
			}
			visitChild(c)
			if w.done {
				return
			}
		}
	default:
		if c := n.kids[l]; c != nil {
			visitChild(c)
		}
	}
	w.path = w.path[:base]
}

// all visits every message below n (for '#').
func (w *rwalk) all(n *rnode, d auth.SubDecision, root bool) {
	base := len(w.path)
	for lv, c := range n.kids {
		if root && strings.HasPrefix(lv, "$") {
			continue // [MQTT-4.7.2-1]
		}
		cd := w.enter(c, base, d)
		if cd == auth.SubDeny {
			continue
		}
		w.emit(c.m, cd)
		w.all(c, cd, false)
		if w.done {
			break
		}
	}
	w.path = w.path[:base]
}

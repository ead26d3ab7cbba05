package broker

import (
	"sync"
	"sync/atomic"

	"github.com/sockmq/sockmq/internal/topic"
)

// subIndex finds the subscriptions matching a topic: a tree with one level
// per node, '+' and '#' children, and shared subscription groups. Lookups
// take a read lock and do not allocate beyond the result slice.
type subIndex struct {
	mu   sync.RWMutex
	root inode
	n    int // subscriptions held
	// interest, when set (cluster mode), hears of each filter's first and
	// last subscription; skipShared: shared groups are served through
	// the backplane, so match leaves them out (backplane.go).
	interest   func(filter, group string, on bool)
	skipShared bool
}

type inode struct {
	parent *inode
	level  string
	kids   map[string]*inode // made on first child
	plus   *inode
	hash   *inode
	subs   []*subscription
	shared map[string]*shareGroup // made on first shared subscription
}

// shareGroup is a $share/<name>/<filter> group: each message goes to one
// member.
type shareGroup struct {
	members []*subscription
	next    atomic.Uint32
}

func (n *inode) child(level string, create bool) *inode {
	var c *inode
	switch level {
	case "+":
		c = n.plus
	case "#":
		c = n.hash
	default:
		c = n.kids[level]
	}
	if c != nil || !create {
		return c
	}
	c = &inode{parent: n, level: level}
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.kids == nil {
			n.kids = make(map[string]*inode)
		}
		n.kids[level] = c
	}
	return c
}

func (n *inode) empty() bool {
	return len(n.kids) == 0 && n.plus == nil && n.hash == nil && len(n.subs) == 0 && len(n.shared) == 0
}

// prune removes n and its empty ancestors.
func (n *inode) prune() {
	for n.parent != nil && n.empty() {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.kids, n.level)
			if len(p.kids) == 0 {
				p.kids = nil
			}
		}
		n = p
	}
}

func (ix *subIndex) node(filter string, create bool) *inode {
	n := &ix.root
	for rest := filter; ; {
		l, r, more := topic.NextLevel(rest)
		n = n.child(l, create)
		if n == nil || !more {
			return n
		}
		rest = r
	}
}

// add inserts sub (the caller removed any previous subscription of the
// same session and filter).
func (ix *subIndex) add(sub *subscription) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.node(sub.inner, true)
	if sub.group != "" {
		if n.shared == nil {
			n.shared = make(map[string]*shareGroup)
		}
		g := n.shared[sub.group]
		if g == nil {
			g = &shareGroup{}
			n.shared[sub.group] = g
			if ix.interest != nil {
				ix.interest(sub.inner, sub.group, true)
			}
		}
		g.members = append(g.members, sub)
	} else {
		n.subs = append(n.subs, sub)
		if len(n.subs) == 1 && ix.interest != nil {
			ix.interest(sub.inner, "", true)
		}
	}
	ix.n++
}

// remove deletes sub; it reports whether it was there.
func (ix *subIndex) remove(sub *subscription) bool {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := ix.node(sub.inner, false)
	if n == nil {
		return false
	}
	found := false
	if sub.group != "" {
		if g := n.shared[sub.group]; g != nil {
			g.members, found = without(g.members, sub)
			if len(g.members) == 0 {
				if found && ix.interest != nil {
					ix.interest(sub.inner, sub.group, false)
				}
				delete(n.shared, sub.group)
				if len(n.shared) == 0 {
					n.shared = nil
				}
			}
		}
	} else {
		n.subs, found = without(n.subs, sub)
		if found && len(n.subs) == 0 && ix.interest != nil {
			ix.interest(sub.inner, "", false)
		}
	}
	if found {
		ix.n--
		n.prune()
	}
	return found
}

func without(list []*subscription, sub *subscription) ([]*subscription, bool) {
	for i, s := range list {
		if s == sub {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			list = list[:last]
			if len(list) == 0 {
				list = nil
			}
			return list, true
		}
	}
	return list, false
}

// count returns the number of subscriptions held.
func (ix *subIndex) count() int {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	return ix.n
}

// match appends to out every subscription matching topic name t (one
// member per shared group) and returns it. Wildcards in the first level
// never match topics starting with '$' [MQTT-4.7.2-1].
func (ix *subIndex) match(t string, out []*subscription) []*subscription {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	if t == "" {
		return out
	}
	return matchNode(&ix.root, t, t[0] != '$', !ix.skipShared, out)
}

func matchNode(n *inode, rest string, wild, shared bool, out []*subscription) []*subscription {
	level, next, more := topic.NextLevel(rest)
	if wild && n.hash != nil {
		out = collect(n.hash, shared, out)
	}
	visit := func(c *inode) {
		if more {
			out = matchNode(c, next, true, shared, out)
			return
		}
		out = collect(c, shared, out)
		if c.hash != nil {
			out = collect(c.hash, shared, out) // "a/#" matches "a"
		}
	}
	if c := n.kids[level]; c != nil {
		visit(c)
	}
	if wild && n.plus != nil {
		visit(n.plus)
	}
	return out
}

func collect(n *inode, shared bool, out []*subscription) []*subscription {
	out = append(out, n.subs...)
	if !shared {
		return out
	}
	for _, g := range n.shared {
		if m := g.pick(); m != nil {
			out = append(out, m)
		}
	}
	return out
}

// pick chooses the group member for one message: round robin, preferring
// members whose session is connected.
func (g *shareGroup) pick() *subscription {
	n := len(g.members)
	if n == 0 {
		return nil
	}
	start := int(g.next.Add(1) % uint32(n))
	for i := 0; i < n; i++ {
		m := g.members[(start+i)%n]
		if m.sess == nil || m.sess.online.Load() {
			return m
		}
	}
	return g.members[start]
}

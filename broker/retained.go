package broker

import (
	"errors"
	"strings"
	"sync"
	_ "unsafe" // go:linkname

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
)

// retainedIndex is a tree of the topics that hold a retained message, by
// level. mochi keeps the messages themselves, but its lookup copies every
// message a filter matches before anything is checked: a SUBSCRIBE to "#"
// by a user who may read none of 20,000 retained messages cost ~280ms of
// CPU (mochi copied each 800-byte packet twice, then the ACL refused it).
// A walk over this index descends only into the subtrees the subscriber's
// ACL lets it read (auth.ReadScope), and only the messages it will deliver
// are copied out of mochi, so the cost follows what the subscriber may
// read.
//
// The index follows mochi's retained store through the OnRetainMessage and
// OnRetainedExpired hooks and the expirer, and is seeded from it at Start.
// An entry whose message is gone is harmless: the lookup finds nothing.
type retainedIndex struct {
	mu   sync.RWMutex
	root retainedNode
}

type retainedNode struct {
	path     string // the topic name up to and including this level
	children map[string]*retainedNode
	held     bool // a retained message exists at path
}

// sync makes the index agree with mochi about topic: held reports whether
// mochi holds a retained message there now. It is asked under the index
// lock, so when two changes of one topic race, the hook that runs last
// reads mochi's final state and the index ends up right.
func (x *retainedIndex) sync(topic string, held func(topic string) bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	if held(topic) {
		x.add(topic)
	} else {
		x.remove(topic)
	}
}

// add records that topic holds a retained message. The caller holds x.mu.
func (x *retainedIndex) add(topic string) {
	n := &x.root
	for i := 0; ; {
		j := strings.IndexByte(topic[i:], '/')
		end := len(topic)
		if j >= 0 {
			end = i + j
		}
		key := topic[i:end]
		c := n.children[key]
		if c == nil {
			if n.children == nil {
				n.children = make(map[string]*retainedNode)
			}
			c = &retainedNode{path: topic[:end]}
			n.children[key] = c
		}
		n = c
		if j < 0 {
			break
		}
		i = end + 1
	}
	n.held = true
}

// remove records that topic holds no retained message and drops the nodes
// that lead nowhere any more. The caller holds x.mu.
func (x *retainedIndex) remove(topic string) {
	chain := []*retainedNode{&x.root}
	var keys []string
	n := &x.root
	for rest := topic; ; {
		key, next, more := strings.Cut(rest, "/")
		if n = n.children[key]; n == nil {
			return
		}
		chain, keys = append(chain, n), append(keys, key)
		if !more {
			break
		}
		rest = next
	}
	n.held = false
	for i := len(chain) - 1; i > 0; i-- {
		if c := chain[i]; c.held || len(c.children) > 0 {
			return
		}
		delete(chain[i-1].children, keys[i-1])
	}
}

// topics returns the topics holding a retained message that match the
// topic filter f and that scope may read (nil: all), in no particular
// order. Subtrees scope cannot read are not visited. Topics in a subtree
// scope only partly covers are returned: check each with the Authorizer.
func (x *retainedIndex) topics(f string, scope *auth.ReadScope) []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	w := walk{scope: scope}
	start := auth.SubPartial
	if scope == nil {
		start = auth.SubAllow
	}
	w.match(&x.root, f, start, true)
	return w.out
}

type walk struct {
	scope *auth.ReadScope
	out   []string
}

// match visits the children of n that the remaining filter f matches; d is
// what the scope decided for n.
func (w *walk) match(n *retainedNode, f string, d auth.SubDecision, root bool) {
	level, rest, more := strings.Cut(f, "/")
	switch level {
	case "#":
		if !root && n.held {
			w.out = append(w.out, n.path) // "a/#" matches "a"
		}
		w.all(n, d, root)
	case "+":
		for _, c := range n.children {
			if !(root && strings.HasPrefix(c.path, "$")) { // [MQTT-4.7.2-1]
				w.child(c, rest, more, d)
			}
		}
	default:
		if c := n.children[level]; c != nil {
			w.child(c, rest, more, d)
		}
	}
}

// child visits c, which matches the current filter level.
func (w *walk) child(c *retainedNode, rest string, more bool, d auth.SubDecision) {
	if d == auth.SubPartial {
		if d = w.scope.Under(c.path); d == auth.SubDeny {
			return
		}
	}
	if !more {
		if c.held {
			w.out = append(w.out, c.path)
		}
		return
	}
	w.match(c, rest, d, false)
}

// all visits every node below n.
func (w *walk) all(n *retainedNode, d auth.SubDecision, root bool) {
	for _, c := range n.children {
		if root && strings.HasPrefix(c.path, "$") {
			continue // [MQTT-4.7.2-1]
		}
		cd := d
		if cd == auth.SubPartial {
			if cd = w.scope.Under(c.path); cd == auth.SubDeny {
				continue
			}
		}
		if c.held {
			w.out = append(w.out, c.path)
		}
		w.all(c, cd, false)
	}
}

// sysFilter reports whether filter names $SYS topics, which mochi retains
// without calling any hook, so they are not in the index.
func sysFilter(filter string) bool {
	return filter == "$SYS" || strings.HasPrefix(filter, "$SYS/")
}

// retainedChanged brings the index up to date with mochi about topic.
func (s *Server) retainedChanged(topic string) {
	if !sysFilter(topic) {
		s.retained.sync(topic, s.holdsRetained)
	}
}

func (s *Server) holdsRetained(topic string) bool {
	_, ok := s.mq.Topics.Retained.Get(topic)
	return ok
}

// seedRetained indexes the retained messages mochi restored from the store.
func (s *Server) seedRetained() {
	for topic := range s.mq.Topics.Retained.GetAll() {
		s.retainedChanged(topic)
	}
}

// eachRetained calls fn with each retained message matching filter that id
// may read (every one when id is nil or no Authorizer is set), until fn
// returns false. Messages are copied out of mochi one at a time, so a
// caller that stops early (a full client queue) does not pay for the rest.
func (s *Server) eachRetained(filter string, id *auth.Identity, fn func(pk packets.Packet) bool) {
	check := id != nil && s.auth != nil
	if sysFilter(filter) {
		for _, pk := range s.mq.Topics.Messages(filter) { // a few dozen $SYS topics
			if (!check || s.auth.Allowed(*id, pk.TopicName, auth.Read)) && !fn(pk) {
				return
			}
		}
		return
	}
	var scope *auth.ReadScope
	if check {
		scope = s.auth.ReadScope(*id)
	}
	for _, topic := range s.retained.topics(filter, scope) {
		if check && !s.auth.Allowed(*id, topic, auth.Read) {
			continue
		}
		if pk, ok := s.mq.Topics.Retained.Get(topic); ok && !fn(pk) {
			return
		}
	}
}

// Retained returns the retained messages whose topics match filter.
func (s *Server) Retained(filter string) []Message {
	return s.collectRetained(filter, nil)
}

// RetainedFor returns the retained messages whose topics match filter and
// that id may read. Its cost follows what id may read, not the number of
// retained messages: subtrees of the topic tree id's ACL cannot read are
// skipped whole.
func (s *Server) RetainedFor(id auth.Identity, filter string) []Message {
	return s.collectRetained(filter, &id)
}

func (s *Server) collectRetained(filter string, id *auth.Identity) []Message {
	var out []Message
	s.eachRetained(filter, id, func(pk packets.Packet) bool {
		out = append(out, messageFromPacket(pk))
		return true
	})
	return out
}

// mochiPublishToClient is mochi's own delivery of one message to one
// client: it applies the read ACL (OnACLCheck), no-local, retain-as-
// published, subscription identifiers, QoS downgrade, topic aliases, the
// inflight window and the client's send quota, and queues the packet
// without blocking. mochi exports no way to deliver to one client, and
// sockmq replays retained messages on SUBSCRIBE itself (see
// replayRetained).
//
//go:linkname mochiPublishToClient github.com/mochi-mqtt/server/v2.(*Server).publishToClient
func mochiPublishToClient(s *mqtt.Server, cl *mqtt.Client, sub packets.Subscription, pk packets.Packet) (packets.Packet, error)

// replayRetained sends cl the retained messages matching its new
// subscription sub, as MQTT requires after a SUBSCRIBE [MQTT-3.8.4-4],
// honouring the retain handling option [MQTT-3.3.1-9..11]. existed says
// whether the subscription existed before. mochi's own replay is turned
// off for MQTT clients (see OnSubscribe).
func (s *Server) replayRetained(cl *mqtt.Client, sub packets.Subscription, existed bool) {
	if mqtt.IsSharedFilter(sub.Filter) || sub.RetainHandling == 2 || (sub.RetainHandling == 1 && existed) {
		return // shared subscriptions get no retained messages (MQTT 5 4.8.2)
	}
	sub.FwdRetainedFlag = true
	if sub.Identifier > 0 {
		sub.Identifiers = map[string]int{sub.Filter: sub.Identifier} // [MQTT-3.3.4-3]
	}
	id := identityOf(cl)
	s.eachRetained(sub.Filter, &id, func(pk packets.Packet) bool {
		_, err := mochiPublishToClient(s.mq, cl, sub, pk)
		// A full queue or a closed connection drops the rest anyway.
		return !errors.Is(err, packets.ErrPendingClientWritesExceeded) && !errors.Is(err, packets.CodeDisconnect)
	})
}

package broker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// Backplane carries messages between this broker and the other nodes of a
// cluster. The broker calls it; package cluster implements it and
// internal/app wires it with SetBackplane. Without a backplane nothing in
// this file runs.
type Backplane interface {
	// Interest reports that the first local subscription of filter
	// appeared (on) or the last one went (!on); group is the share name
	// of a $share/<group>/<filter> subscription, "" otherwise. It runs
	// under the subscription index's lock and must not block.
	Interest(filter, group string, on bool)
	// Forward sends a message published on this node to the other nodes.
	// With f.Durable it returns only once the cluster has stored the
	// message (and, for a retained one, the retained copy), or an error
	// when it cannot: the publisher must then not be acknowledged.
	// Without it, it must not block.
	Forward(f Forwarded) error
	// RetainedSync returns once the retained updates the cluster had
	// acknowledged when it was called are applied here (bounded wait), so
	// that a subscriber here sees a retained message acknowledged on
	// another node just before.
	RetainedSync()
}

// Forwarded is a message published on this node, encoded for the others.
type Forwarded struct {
	// Topic, QoS and Retain are as published.
	Topic  string
	QoS    byte
	Retain bool
	// Clear: a retained message with an empty payload, which removes the
	// topic's retained message.
	Clear bool
	// Body is the whole message for DeliverRemote and ApplyRetained.
	Body []byte
	// Durable: a publisher waits for an acknowledgement that promises the
	// message is stored (QoS 1/2).
	Durable bool
}

// ErrClusterUnavailable is the error of a QoS 1/2 publish refused because
// the cluster could not store it.
var ErrClusterUnavailable = errors.New("cluster unavailable: message not stored")

// SetBackplane makes the broker one node of a cluster. Call it after New
// and before Start. Shared subscription groups are then served through
// the backplane (each message goes to one member cluster-wide), so local
// routing stops picking local members itself.
func (s *Server) SetBackplane(b Backplane) {
	s.backplane = b
	s.subs.setInterest(b.Interest)
}

// forwardable reports whether messages on t leave this node: $SYS
// describes this node only and $sockmq is never delivered.
func forwardable(t string) bool {
	first, _, _ := topic.NextLevel(t)
	return first != topic.SYS && !topic.Hidden(t)
}

// forward hands m to the backplane, if any; durable asks for the
// cluster's promise (see Backplane.Forward).
func (s *Server) forward(m *msg, durable bool) error {
	if s.backplane == nil || !forwardable(m.topic) {
		return nil
	}
	f := Forwarded{Topic: m.topic, QoS: m.qos, Retain: m.retain, Durable: durable, Clear: m.retain && len(m.payload()) == 0,
		Body: store.EncodeMessage(m.record())}
	if err := s.backplane.Forward(f); err != nil {
		return fmt.Errorf("%w: %w", ErrClusterUnavailable, err)
	}
	return nil
}

// DeliverRemote delivers a message that another node forwarded: to the
// local subscribers it matches when group is "", or to one local member
// of the shared group group/filter. It is never forwarded again, and a
// retained message is delivered with RETAIN but not stored: retained
// state comes from ApplyRetained. Read permissions are checked per
// subscriber as for local messages.
func (s *Server) DeliverRemote(body []byte, group, filter string) error {
	_, err := s.deliverRemote(body, group, filter)
	return err
}

// DeliverRemoteStored is DeliverRemote for a message that the cluster
// keeps until this node confirms it: stored runs once every local copy of
// the message (queued for persistent sessions) is committed to this
// node's store, at once when there is nothing to commit. stored runs on
// the store's writer goroutine or the caller's and must not block; it does
// not run when an error is returned (except a decoding error, after which
// the message is useless anyway and stored runs too).
func (s *Server) DeliverRemoteStored(body []byte, stored func()) error {
	gate, err := s.deliverRemote(body, "", "")
	if errors.Is(err, ErrNotRunning) {
		return err
	}
	if gate == 0 || s.store == nil || !s.store.Wait(gate, store.WaiterFunc(stored)) {
		stored()
	}
	return err
}

// deliverRemote delivers like DeliverRemote and returns the store batch
// that holds the copies queued for persistent sessions (0: none).
func (s *Server) deliverRemote(body []byte, group, filter string) (uint64, error) {
	m, err := decodeRemote(body)
	if err != nil {
		return 0, err
	}
	if !s.running.Load() {
		return 0, ErrNotRunning
	}
	if m.expired(time.Now().Unix()) {
		return 0, nil
	}
	rb := routePool.Get().(*routeBuf)
	if group == "" {
		rb.subs = s.subs.match(m.topic, rb.subs[:0])
	} else if sub := s.subs.pickShared(filter, group); sub != nil {
		rb.subs = append(rb.subs[:0], sub)
	}
	rb.targets = s.targets(m, nil, rb.subs, rb.targets[:0])
	now := time.Now()
	rb.enc.reset(m, now.Unix())
	var gate uint64
	for i := range rb.targets {
		tg := &rb.targets[i]
		if tg.sub.fn != nil {
			tg.sub.fn(m.message())
			continue
		}
		gate = max(gate, s.deliver(tg.sub.sess, m, tg.qos, tg.retain, tg.subIDs, 0, now, &rb.enc))
	}
	rb.enc.reset(nil, 0)
	clear(rb.subs)
	clear(rb.targets)
	routePool.Put(rb)
	return gate, nil
}

// ApplyRetained makes body (a forwarded message) the retained message of
// t, or removes t's retained message when body is nil, as the cluster's
// retained state says. Nothing is forwarded or delivered.
func (s *Server) ApplyRetained(t string, body []byte) error {
	var m *msg
	if body != nil {
		var err error
		if m, err = decodeRemote(body); err != nil {
			return err
		}
		if m.topic != t {
			return fmt.Errorf("retained message for %q carries topic %q", t, m.topic)
		}
		m.retain = true
	} else {
		m = newBody(t, nil)
	}
	if topic.ValidName(t) != nil {
		return fmt.Errorf("retained message: invalid topic %q", t)
	}
	s.retain(m)
	return nil
}

// CatchingUp is implemented by a Backplane that keeps messages for this
// node while it is down: Start calls CatchUp once the restored sessions
// are back and before the listeners accept clients, so that what arrived
// while the node was away reaches the sessions that were there, not
// clients that subscribe after the restart. CatchUp bounds its own wait.
type CatchingUp interface {
	CatchUp()
}

func (s *Server) catchUp() {
	if c, ok := s.backplane.(CatchingUp); ok {
		c.CatchUp()
	}
}

// syncRetained waits for the cluster's retained state before retained
// messages are sent to a new subscription.
func (s *Server) syncRetained() {
	if s.backplane != nil {
		s.backplane.RetainedSync()
	}
}

// decodeRemote rebuilds a forwarded message.
func decodeRemote(body []byte) (*msg, error) {
	r, err := store.DecodeMessage(body)
	if err != nil {
		return nil, err
	}
	if topic.ValidName(r.Topic) != nil || r.QoS > 2 || strings.ContainsAny(r.Topic, "+#") {
		return nil, fmt.Errorf("forwarded message: invalid topic %q or qos %d", r.Topic, r.QoS)
	}
	r.ID = 0
	return msgFromRecord(r, 0), nil // copies topic and payload into one allocation
}

// setInterest makes the index report the first and last local
// subscription of each filter (and share group) to fn, and reports those
// that exist already.
func (ix *subIndex) setInterest(fn func(filter, group string, on bool)) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.interest = fn
	ix.skipShared = true
	var walk func(n *inode, path string)
	walk = func(n *inode, path string) {
		if len(n.subs) > 0 {
			fn(path, "", true)
		}
		for g := range n.shared {
			fn(path, g, true)
		}
		join := func(l string) string {
			if n == &ix.root {
				return l
			}
			return path + "/" + l
		}
		for l, c := range n.kids {
			walk(c, join(l))
		}
		if n.plus != nil {
			walk(n.plus, join("+"))
		}
		if n.hash != nil {
			walk(n.hash, join("#"))
		}
	}
	walk(&ix.root, "")
}

// pickShared returns one member of the local shared group group/filter,
// or nil.
func (ix *subIndex) pickShared(filter, group string) *subscription {
	ix.mu.RLock()
	defer ix.mu.RUnlock()
	n := ix.node(filter, false)
	if n == nil {
		return nil
	}
	if g := n.shared[group]; g != nil {
		return g.pick()
	}
	return nil
}

// refuseUnstored answers a QoS 1/2 publish that the cluster could not
// store: MQTT 5 gets PUBACK or PUBREC with 0x80 (unspecified error; the
// client may send it again), while MQTT 3.1.1 cannot refuse a publish, so
// the connection is closed without an acknowledgement and the client
// sends the message again when it reconnects.
func (c *conn) refuseUnstored(qos byte, pid uint16, err error) error {
	c.s.log.Debug("publish refused: the cluster could not store it", "client", c.clientID, "error", err)
	switch {
	case c.version == 5 && qos == 1:
		c.sendAck(ackPacket(packets.Puback, pid, 5, packets.ErrUnspecifiedError.Code), 0)
	case c.version == 5 && qos == 2:
		c.sendAck(ackPacket(packets.Pubrec, pid, 5, packets.ErrUnspecifiedError.Code), 0)
	default:
		return err
	}
	return nil
}

// healthPart is a section that another component adds to /healthz.
type healthPart struct {
	name string
	fn   func() (any, bool)
}

// AddHealth adds a section to /healthz: fn returns what to show under
// name (encoded as JSON) and whether it is healthy; an unhealthy section
// makes /healthz answer 503 with status "<name> unavailable". Call it
// before Start.
func (s *Server) AddHealth(name string, fn func() (any, bool)) {
	s.healthParts = append(s.healthParts, healthPart{name, fn})
}

func (s *Server) writeHealthParts(w http.ResponseWriter) {
	out := map[string]any{"status": "ok", "clients": s.metrics.clients.Load()}
	code := http.StatusOK
	for _, p := range s.healthParts {
		v, ok := p.fn()
		out[p.name] = v
		if !ok && code == http.StatusOK {
			code = http.StatusServiceUnavailable
			out["status"] = p.name + " unavailable"
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

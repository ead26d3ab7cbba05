package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/store"
	"github.com/sockmq/sockmq/internal/topic"
)

// SessionHandover is what the broker asks of a cluster, besides
// ClusterSessions, to move a persistent session between nodes. A
// ClusterSessions that also implements it gets sessions handed over; one
// that does not leaves a moved client with a fresh session.
type SessionHandover interface {
	// FetchSession asks prevNode, the previous owner of clientID, for the
	// session this node just claimed with epoch. It returns the exported
	// session (see Server.ExportSession), or an error when prevNode does
	// not answer in time, has no such session, or refuses.
	FetchSession(ctx context.Context, clientID string, epoch uint64, prevNode string) ([]byte, error)
	// ConfirmSession tells prevNode that this node stored the session it
	// fetched: prevNode drops its copy.
	ConfirmSession(clientID string, epoch uint64, prevNode string) error
}

// ErrNoSession is returned by ExportSession when there is no persistent
// session of the client id to hand over.
var ErrNoSession = errors.New("no persistent session of this client id")

// handoverGrace is how long a node keeps the session of a client id that
// moved to another node for that node to fetch it; it is dropped then.
const handoverGrace = 30 * time.Second

// sessionExport is the wire form of a handed-over session.
type sessionExport struct {
	ClientID string               `json:"client_id"`
	Owner    string               `json:"owner,omitempty"`
	Expiry   uint32               `json:"expiry"`
	Subs     []store.Subscription `json:"subs,omitempty"`
	Inbound2 []uint16             `json:"inbound2,omitempty"`
	Out      []exportedEntry      `json:"out,omitempty"`
	// Truncated counts the queued messages left out (size bound).
	Truncated int `json:"truncated,omitempty"`
}

// exportedEntry is one queued or in-flight QoS 1/2 message: State and
// PacketID keep a QoS 2 delivery exactly-once across the move.
type exportedEntry struct {
	PacketID uint16        `json:"pid,omitempty"`
	QoS      byte          `json:"qos"`
	State    byte          `json:"state"`
	Retain   bool          `json:"retain,omitempty"`
	SubIDs   []uint32      `json:"sub_ids,omitempty"`
	Msg      store.Message `json:"msg"`
}

// handoverState tracks the sessions of client ids that moved to another
// node and wait there to be fetched (guarded by its own mutex).
type handoverState struct {
	mu     sync.Mutex
	parked map[string]*session
}

// handover returns the cluster's SessionHandover, nil without one.
func (s *Server) handover() SessionHandover {
	if s.cluster == nil {
		return nil
	}
	h, _ := s.cluster.cs.(SessionHandover)
	return h
}

// parkMoved keeps the persistent session of a client id that moved to
// another node until that node fetches it (or handoverGrace passes). It
// reports false when the session is not kept (no hand-over, or the
// session does not outlive its connection): the caller ends it.
func (s *Server) parkMoved(sess *session) bool {
	if s.handover() == nil {
		return false
	}
	sess.mu.Lock()
	keep := !sess.gone && sess.expiry > 0 && sess.conn == nil
	if keep {
		sess.timerGen++ // no will or expiry timer here any more
		sess.will = nil
	}
	sess.mu.Unlock()
	if !keep {
		return false
	}
	ho := &s.cluster.ho
	ho.mu.Lock()
	if ho.parked == nil {
		ho.parked = make(map[string]*session)
	}
	ho.parked[sess.id] = sess
	ho.mu.Unlock()
	time.AfterFunc(handoverGrace, func() {
		if s.running.Load() { // after a shutdown, a restart drops it (DropMovedSessions)
			s.dropParked(sess.id, sess)
		}
	})
	return true
}

// dropParked ends a parked session (the other node fetched it, or never
// did); a session a new local connection attached to since stays.
func (s *Server) dropParked(clientID string, sess *session) {
	ho := &s.cluster.ho
	ho.mu.Lock()
	if sess == nil {
		sess = ho.parked[clientID]
	}
	if sess == nil || ho.parked[clientID] != sess {
		ho.mu.Unlock()
		return
	}
	delete(ho.parked, clientID)
	ho.mu.Unlock()
	sess.mu.Lock()
	attached := sess.conn != nil
	sess.mu.Unlock()
	if attached {
		return
	}
	s.endSession(sess)
	s.clusterClearWill(clientID)
}

// unparkOnAttach forgets a parked session that a new local connection took
// back.
func (s *Server) unparkOnAttach(sess *session) {
	if s.cluster == nil {
		return
	}
	ho := &s.cluster.ho
	ho.mu.Lock()
	if ho.parked[sess.id] == sess {
		delete(ho.parked, sess.id)
	}
	ho.mu.Unlock()
}

// ExportSession serializes the persistent session of clientID for the node
// that claimed it with epoch: its live connection here (if any) ends first
// (reason moved). The session's subscriptions, inbound QoS 2 packet ids
// and its queued and in-flight messages (oldest first, at most
// limits.max_inflight of them, within maxBytes) are exported; the
// session stays here until DropExported (or handoverGrace passes).
func (s *Server) ExportSession(clientID string, epoch uint64, maxBytes int) ([]byte, error) {
	if cl := s.cluster; cl != nil {
		cl.mu.Lock()
		st := cl.epochs[clientID]
		if st != nil && st.epoch >= epoch {
			cl.mu.Unlock()
			return nil, fmt.Errorf("export %s: this node's claim (epoch %d) is not older than %d", clientID, st.epoch, epoch)
		}
		if st != nil && !st.claiming {
			delete(cl.epochs, clientID)
		}
		cl.mu.Unlock()
	}
	sess := s.sessions.get(clientID)
	if sess == nil {
		return nil, ErrNoSession
	}
	sess.mu.Lock()
	oc := sess.conn
	sess.mu.Unlock()
	if oc != nil {
		s.log.Info("client reconnected on another node: ending its connection here to hand its session over", "client", clientID)
		oc.disconnect(&endCause{err: packets.ErrSessionTakenOver, reason: ReasonMoved, code: packets.ErrSessionTakenOver.Code})
		select {
		case <-oc.detached:
		case <-time.After(2 * time.Second):
			return nil, fmt.Errorf("export %s: the connection here did not end in time", clientID)
		}
	}
	sess.mu.Lock()
	if sess.gone || sess.conn != nil || sess.expiry == 0 {
		sess.mu.Unlock()
		return nil, ErrNoSession
	}
	ex := sessionExport{ClientID: sess.id, Owner: sess.owner, Expiry: sess.expiry}
	for _, sub := range sess.subs {
		ex.Subs = append(ex.Subs, *sub.record())
	}
	for pid := range sess.in2 {
		ex.Inbound2 = append(ex.Inbound2, pid)
	}
	size := 1024 + 64*len(ex.Subs) + 8*len(ex.Inbound2)
	for _, sub := range ex.Subs {
		size += len(sub.Filter)
	}
	limit := int(s.cfg.Limits.MaxInflight)
	sess.pending(func(e *outEntry) {
		r := e.m.record()
		n := 256 + 2*(len(r.Topic)+len(r.Payload)+len(r.ResponseTopic)+len(r.CorrelationData)+len(r.ContentType))
		for _, u := range r.User {
			n += 2 * (len(u.Key) + len(u.Value))
		}
		if ex.Truncated > 0 || len(ex.Out) >= limit || size+n > maxBytes {
			ex.Truncated++
			return
		}
		size += n
		rec := *r
		rec.ID = 0
		ex.Out = append(ex.Out, exportedEntry{PacketID: e.pid, QoS: e.qos, State: e.state, Retain: e.has(efRetain),
			SubIDs: sess.entrySubIDs(e), Msg: rec})
	})
	sess.mu.Unlock()
	if ex.Truncated > 0 {
		s.log.Warn("session hand-over: queued messages left out (size or limits.max_inflight)", "client", clientID, "left_out", ex.Truncated)
	}
	b, err := json.Marshal(&ex)
	if err != nil {
		return nil, fmt.Errorf("export %s: %w", clientID, err)
	}
	if len(b) > maxBytes {
		return nil, fmt.Errorf("export %s: %d bytes exceed the %d allowed", clientID, len(b), maxBytes)
	}
	s.parkMoved(sess) // an offline session not parked yet (TakenOver not heard yet) waits here too
	s.log.Info("session exported to the node the client moved to", "client", clientID, "subscriptions", len(ex.Subs), "messages", len(ex.Out))
	return b, nil
}

// DropExported ends the session of clientID that was exported: the node
// that claimed it with epoch stored it.
func (s *Server) DropExported(clientID string, epoch uint64) {
	if s.cluster == nil {
		return
	}
	s.log.Info("session handed over: dropping it here", "client", clientID, "epoch", epoch)
	s.dropParked(clientID, nil)
}

// handoverFetch fetches the session of c's client id from the node it
// moved from, when c resumes a session (clean start false) that this node
// does not have and that node is alive. It returns nil when there is none
// to restore (then the client gets a fresh session).
func (s *Server) handoverFetch(c *conn, clean bool) *sessionExport {
	h := s.handover()
	if h == nil || clean {
		return nil
	}
	cl := s.cluster
	cl.mu.Lock()
	st := cl.epochs[c.clientID]
	var epoch uint64
	var prev string
	if st != nil {
		epoch, prev = st.epoch, st.prevNode
	}
	cl.mu.Unlock()
	if prev == "" || s.sessions.get(c.clientID) != nil {
		return nil
	}
	b, err := h.FetchSession(context.Background(), c.clientID, epoch, prev)
	if err != nil {
		s.log.Info("session hand-over failed: the client starts a fresh session", "client", c.clientID, "from", prev, "error", err)
		return nil
	}
	var ex sessionExport
	if err := json.Unmarshal(b, &ex); err != nil || ex.ClientID != c.clientID || ex.Owner != c.identity.Username {
		s.log.Warn("session hand-over: invalid session received: the client starts a fresh session", "client", c.clientID, "from", prev, "error", err)
		return nil
	}
	return &ex
}

// handoverImport restores a fetched session into sess (just attached to
// its new connection, before CONNACK), stores it, and confirms to the
// previous node. It reports whether the session is present.
func (s *Server) handoverImport(sess *session, c *conn, ex *sessionExport) bool {
	id := identity(sess.owner, sess.id)
	var added []*subscription
	sess.mu.Lock()
	for _, sr := range ex.Subs {
		if len(sess.subs) >= s.cfg.Limits.MaxSubscriptions {
			s.log.Warn("session hand-over: subscription left out: limits.max_subscriptions reached", "client", sess.id, "filter", sr.Filter)
			continue
		}
		if topic.ValidFilter(sr.Filter) != nil {
			continue
		}
		sub := &subscription{sess: sess, filter: sr.Filter, qos: min(sr.QoS, 2), noLocal: sr.NoLocal, rap: sr.RetainAsPublished, rh: sr.RetainHandling, id: sr.ID}
		sub.group, sub.inner, _ = topic.SplitShared(sr.Filter)
		if sub.group == "" {
			sub.inner = sr.Filter
		}
		if s.auth != nil {
			switch s.auth.Subscription(id, sub.inner) {
			case auth.SubDeny:
				continue
			case auth.SubPartial:
				sub.partial.Store(true)
			}
		}
		if sess.subs == nil {
			sess.subs = make(map[string]*subscription)
		}
		if old := sess.subs[sub.filter]; old != nil {
			continue
		}
		sess.subs[sub.filter] = sub
		added = append(added, sub)
	}
	sess.nsubs.Store(int32(len(sess.subs)))
	for _, pid := range ex.Inbound2 {
		if sess.in2 == nil {
			sess.in2 = make(map[uint16]struct{})
		}
		sess.in2[pid] = struct{}{}
	}
	dropped := 0
	for i := range ex.Out {
		o := &ex.Out[i]
		if sess.count >= int(s.cfg.Limits.MaxInflight) || (o.QoS != 1 && o.QoS != 2) {
			dropped++
			continue
		}
		m := msgFromRecord(&o.Msg, 0)
		m.ref = store.BodyRef{}
		e := outEntry{m: m, seq: sess.nextSeq, qos: o.QoS, state: o.State}
		sess.nextSeq++
		if o.Retain {
			e.flags |= efRetain
		}
		if o.State != store.OutQueued && o.PacketID != 0 {
			if _, used := sess.byPID[o.PacketID]; !used {
				e.pid = o.PacketID // a resend must use it
			}
		} else {
			e.state = store.OutQueued
		}
		sess.push(e, o.SubIDs)
		s.metrics.queued.Add(1)
		if m.expiry != 0 {
			s.clock.expireQueued(sess, m)
		}
	}
	persistent := sess.persistent
	if persistent {
		s.persistSession(sess, true)
		// persistSession wrote every entry with its state.
		sess.pending(func(e *outEntry) {
			if e.state != store.OutQueued {
				e.flags |= efSentStored
			}
		})
	}
	sess.mu.Unlock()
	if dropped > 0 {
		s.metrics.inflightDropped.Add(uint64(dropped))
		s.limits.Hit(limitMaxInflight, "session hand-over: QoS 1/2 messages dropped: session queue is full",
			"client", sess.id, "key", "limits.max_inflight", "value", s.cfg.Limits.MaxInflight, "dropped", dropped)
	}
	for _, sub := range added {
		s.subs.add(sub)
		s.metrics.subscriptions.Add(1)
	}
	if persistent {
		s.store.Sync()
	}
	cl := s.cluster
	cl.mu.Lock()
	var epoch uint64
	var prev string
	if st := cl.epochs[sess.id]; st != nil {
		epoch, prev = st.epoch, st.prevNode
	}
	cl.mu.Unlock()
	if h := s.handover(); h != nil && prev != "" {
		go func() {
			if err := h.ConfirmSession(sess.id, epoch, prev); err != nil {
				s.log.Warn("session hand-over: confirmation not delivered: the previous node drops its copy after its grace period",
					"client", sess.id, "from", prev, "error", err)
			}
		}()
	}
	s.log.Info("session handed over from another node", "client", sess.id, "from", prev,
		"subscriptions", len(added), "messages", len(ex.Out)-dropped, "remote", c.remote)
	return true
}

// DropMovedSessions ends every offline session for which movedAway
// reports true: in a cluster, sessions restored from the store whose
// client id was claimed on another node while this one was down (that
// node started a fresh session). Call it before Start. It returns how
// many sessions it dropped.
func (s *Server) DropMovedSessions(movedAway func(clientID string) bool) int {
	n := 0
	for _, sess := range s.sessions.all() {
		sess.mu.Lock()
		offline := sess.conn == nil && !sess.gone
		sess.mu.Unlock()
		if !offline || !movedAway(sess.id) {
			continue
		}
		s.log.Info("restored session dropped: its client id was claimed on another node while this node was down", "client", sess.id)
		s.endSession(sess)
		n++
	}
	return n
}

// HasSession reports whether this node holds a session (connected or not)
// of the client id.
func (s *Server) HasSession(clientID string) bool { return s.sessions.get(clientID) != nil }

package broker

import (
	"context"
	"errors"
	"sync"

	"github.com/mochi-mqtt/server/v2/packets"
)

// ReasonMoved is the end reason of a session that another cluster node
// took over: the client reconnected there. Its session ends here without a
// presence leave (the new node published the session).
const ReasonMoved = "moved"

// ErrClientIDOwnedElsewhere is what ClusterSessions.ClaimClientID returns
// (wrapped) when the client id belongs to another user on some node.
var ErrClientIDOwnedElsewhere = errors.New("client id owned by another user in the cluster")

// ClusterSessions is what the broker asks of a cluster about client ids
// and wills. The cluster package implements it; without it (a single
// node) none of this happens.
type ClusterSessions interface {
	// ClaimClientID makes this node the owner of a client id, storing its
	// will (or clearing the stored one). It returns an error wrapping
	// ErrClientIDOwnedElsewhere when another user owns the id, and any
	// other error when ownership cannot be checked: the CONNECT is then
	// refused with "server unavailable".
	ClaimClientID(ctx context.Context, c ClientIDClaim) (ClientIDGrant, error)
	// ReleaseClientID gives up ownership of a client id whose session
	// ended on this node (epoch 0: a session restored from the store).
	ReleaseClientID(clientID string, epoch uint64)
	// ClearWill forgets the stored will of a client that disconnected
	// cleanly.
	ClearWill(clientID string)
	// ClaimWill is asked before this node publishes a will: false means
	// the will is no longer in the cluster's store (another node sent it
	// while this one was considered dead) and must not be sent.
	ClaimWill(clientID string) bool
}

// ClientIDClaim is one CONNECT's claim of its client id.
type ClientIDClaim struct {
	ClientID string
	Username string
	// Persistent says the session outlives the connection.
	Persistent bool
	// Will is the connection's will, nil without one.
	Will *ClusterWill
}

// ClusterWill is a will as the cluster stores it.
type ClusterWill struct {
	Topic            string
	Payload          []byte
	QoS              byte
	Retain           bool
	Delay            uint32 // seconds
	Expiry           uint32 // message expiry interval, seconds
	ContentType      string
	PayloadFormat    byte
	HasPayloadFormat bool
}

// ClientIDGrant is a successful claim.
type ClientIDGrant struct {
	// Epoch grows with every claim of the client id in the cluster.
	Epoch uint64
	// Takeover says a live connection on another node is being replaced.
	Takeover bool
}

// clusterState is the broker's side of ClusterSessions: the epoch of each
// client id this node owns.
type clusterState struct {
	cs ClusterSessions

	mu     sync.Mutex
	epochs map[string]*claimState
}

type claimState struct {
	epoch    uint64
	claiming bool   // a claim is in flight
	seen     uint64 // newest foreign epoch seen while claiming
}

// SetClusterSessions makes the broker check client ids and wills with a
// cluster. Call it before Start.
func (s *Server) SetClusterSessions(cs ClusterSessions) {
	s.cluster = &clusterState{cs: cs, epochs: make(map[string]*claimState)}
}

// TakenOver is called by the cluster when another node claimed clientID
// with epoch: a local connection or session with an older epoch ends
// (reason moved); its immediate will is published as for any takeover.
func (s *Server) TakenOver(clientID string, epoch uint64) {
	cl := s.cluster
	if cl == nil {
		return
	}
	cl.mu.Lock()
	st := cl.epochs[clientID]
	switch {
	case st == nil:
	case st.claiming:
		st.seen = max(st.seen, epoch)
		cl.mu.Unlock()
		return
	case st.epoch >= epoch:
		cl.mu.Unlock()
		return
	default:
		delete(cl.epochs, clientID)
	}
	cl.mu.Unlock()
	s.endMoved(clientID)
}

// endMoved ends the local connection and session of a client id that now
// lives on another node.
func (s *Server) endMoved(clientID string) {
	sess := s.sessions.get(clientID)
	if sess == nil {
		return
	}
	sess.mu.Lock()
	oc := sess.conn
	sess.mu.Unlock()
	if oc != nil {
		s.log.Info("client reconnected on another node: ending its connection here", "client", clientID)
		oc.disconnect(&endCause{err: packets.ErrSessionTakenOver, reason: ReasonMoved, code: packets.ErrSessionTakenOver.Code})
		return
	}
	s.log.Info("client reconnected on another node: its offline session here ends", "client", clientID)
	s.endSession(sess)
	s.clusterClearWill(clientID) // a delayed will pending here is cancelled
}

// clusterClaim claims c's client id before it attaches to a session. It
// answers the refusal code when the CONNECT must be refused.
func (s *Server) clusterClaim(c *conn, persistent bool, will *pendingWill) (*packets.Code, error) {
	cl := s.cluster
	if cl == nil {
		return nil, nil
	}
	id := c.clientID
	cl.mu.Lock()
	st := cl.epochs[id]
	if st == nil {
		st = &claimState{}
		cl.epochs[id] = st
	}
	st.claiming = true
	cl.mu.Unlock()

	req := ClientIDClaim{ClientID: id, Username: c.identity.Username, Persistent: persistent}
	if will != nil {
		w := will.m
		cw := &ClusterWill{Topic: w.topic, Payload: w.payload(), QoS: w.qos, Retain: w.retain, Delay: will.delay, Expiry: will.expiryInterval}
		if p := w.props; p != nil {
			cw.ContentType, cw.PayloadFormat, cw.HasPayloadFormat = p.contentType, p.payloadFormat, p.hasPayloadFormat
		}
		req.Will = cw
	}
	g, err := cl.cs.ClaimClientID(context.Background(), req)

	cl.mu.Lock()
	st.claiming = false
	if err != nil {
		if st.epoch == 0 && cl.epochs[id] == st {
			delete(cl.epochs, id)
		}
		cl.mu.Unlock()
		code := packets.ErrServerUnavailable
		if errors.Is(err, ErrClientIDOwnedElsewhere) {
			code = packets.ErrNotAuthorized
		}
		return &code, err
	}
	st.epoch = g.Epoch
	newer := st.seen > g.Epoch
	st.seen = 0
	cl.mu.Unlock()
	if newer {
		// Another node claimed the id after us while we were claiming: it
		// is theirs.
		code := packets.ErrSessionTakenOver
		return &code, errors.New("the client id was claimed on another node during CONNECT")
	}
	c.takeover = c.takeover || g.Takeover
	return nil, nil
}

// clusterSessionEnded releases the client id of a session that ended here.
func (s *Server) clusterSessionEnded(clientID string) {
	cl := s.cluster
	if cl == nil {
		return
	}
	cl.mu.Lock()
	st := cl.epochs[clientID]
	var epoch uint64
	if st != nil && !st.claiming {
		epoch = st.epoch
		delete(cl.epochs, clientID)
	}
	claiming := st != nil && st.claiming
	cl.mu.Unlock()
	if claiming {
		return // a new connection is claiming the id right now
	}
	go cl.cs.ReleaseClientID(clientID, epoch)
}

// clusterClearWill forgets the stored will of a client that disconnected
// cleanly.
func (s *Server) clusterClearWill(clientID string) {
	if cl := s.cluster; cl != nil {
		go cl.cs.ClearWill(clientID)
	}
}

// clusterMaySendWill asks the cluster whether this node may publish the
// will of clientID.
func (s *Server) clusterMaySendWill(clientID string) bool {
	cl := s.cluster
	return cl == nil || cl.cs.ClaimWill(clientID)
}

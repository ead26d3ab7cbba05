package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/cluster/control"
	"github.com/sockmq/sockmq/config"
	"github.com/sockmq/sockmq/presence"
)

// controlDeps is what the cluster control state needs from a running
// cluster node.
type controlDeps struct {
	JetStream jetstream.JetStream
	Cluster   string
	Node      string
	Replicas  int
	NodeTTL   time.Duration // zero: control.DefaultNodeTTL
}

// clusterSessions gives the broker the control state as the
// broker.ClusterSessions it declares.
type clusterSessions struct{ c *control.Controller }

var _ broker.ClusterSessions = clusterSessions{}

func (cs clusterSessions) ClaimClientID(ctx context.Context, c broker.ClientIDClaim) (broker.ClientIDGrant, error) {
	cl := control.Claim{ClientID: c.ClientID, User: c.Username, Persistent: c.Persistent}
	if w := c.Will; w != nil {
		cl.Will = &control.Will{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain, Delay: w.Delay, Expiry: w.Expiry,
			ContentType: w.ContentType, PayloadFormat: w.PayloadFormat, HasPayloadFormat: w.HasPayloadFormat}
	}
	g, err := cs.c.Claim(ctx, cl)
	if errors.Is(err, control.ErrOwnedByOther) {
		return broker.ClientIDGrant{}, fmt.Errorf("%w: %w", broker.ErrClientIDOwnedElsewhere, err)
	}
	return broker.ClientIDGrant{Epoch: g.Epoch, Takeover: g.Takeover, PrevNode: g.PrevNode}, err
}

func (cs clusterSessions) ReleaseClientID(id string, epoch uint64) { cs.c.Release(id, epoch) }
func (cs clusterSessions) ClearWill(id string)                     { cs.c.ClearWill(id) }
func (cs clusterSessions) ClaimWill(id string) bool                { return cs.c.ClaimWill(id) }

// mirroredPresence publishes presence through the broker and records each
// session document in the cluster, so that a reaper can clear it if this
// node dies.
type mirroredPresence struct {
	presencePublisher
	ctl *control.Controller
}

func (p mirroredPresence) PublishPresence(topic string, payload []byte, retain bool) error {
	m := broker.Message{Topic: topic, Payload: payload, Retain: retain, QoS: 1}
	if len(payload) > 0 {
		m.ContentType, m.PayloadFormat, m.HasPayloadFormat = "application/json", 1, true
	}
	err := p.b.Publish(m)
	if errors.Is(err, broker.ErrNotRunning) {
		// Shutting down: the record stays, and the other nodes clear the
		// session from presence once this node's liveness key expires.
		return nil
	}
	if id, ok := strings.CutPrefix(topic, presence.ClientsPrefix); ok && retain {
		var doc []byte
		if len(payload) > 0 {
			doc = payload
		}
		p.ctl.MirrorPresence(id, doc)
	}
	return err
}

// newControl opens the cluster's control state and hooks it into the
// broker (client ids, wills) and presence (node name, mirror). The
// returned controller is started by App.Start.
func (a *App) newControl(cfg config.File, d controlDeps) (*control.Controller, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := a.Broker
	authSvc := a.Auth
	ttl := cfg.Bridge.TokenExpiry
	ctl, err := control.New(ctx, control.Config{
		JetStream: d.JetStream, Cluster: d.Cluster, Node: d.Node, Replicas: d.Replicas, NodeTTL: d.NodeTTL,
		RevokedTTL: ttl,
		Hooks: control.Hooks{
			TakenOver: b.TakenOver,
			PublishWill: func(w control.Will) error {
				return b.Publish(broker.Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain,
					ContentType: w.ContentType, PayloadFormat: w.PayloadFormat, HasPayloadFormat: w.HasPayloadFormat})
			},
			MayWrite: func(user, clientID, topic string) bool {
				if user != "" && cfg.Auth.PasswordFile != "" && !authSvc.UserExists(user) {
					return false // the user was deleted since
				}
				return authSvc.Allowed(auth.Identity{Username: user, ClientID: clientID, Anonymous: user == ""}, topic, auth.Write)
			},
			PublishPresence: presencePublisher{b}.PublishPresence,
			FileHashes:      func() map[string]string { return fileHashes(cfg.Auth) },
			Rejoined:        a.republishPresence,
		},
	}, a.Log)
	if err != nil {
		return nil, err
	}
	b.SetClusterSessions(clusterSessions{ctl})
	if err := wireHandover(b, ctl); err != nil {
		return nil, err
	}
	// Unavailable (503) until the controller has started: a node answers
	// /healthz only once it has joined the cluster's control state, not
	// as soon as its listeners are open.
	b.AddHealth("cluster_control", func() (any, bool) { return ctl.Health(), ctl.Started() })
	return ctl, nil
}

// fileHashes returns the SHA-256 of the password and ACL files (those
// configured), so that /healthz can tell when nodes' files differ.
func fileHashes(c auth.Config) map[string]string {
	out := make(map[string]string, 2)
	for name, path := range map[string]string{"password_file": c.PasswordFile, "acl_file": c.ACLFile} {
		if path == "" {
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			out[name] = "unreadable"
			continue
		}
		sum := sha256.Sum256(b)
		out[name] = hex.EncodeToString(sum[:8])
	}
	return out
}

// republishPresence publishes (and mirrors) the document of every local
// session again: after this node was cut off from the cluster for longer
// than node_ttl, another node may have removed them as a dead node's.
func (a *App) republishPresence() {
	if a.Presence == nil || a.Control == nil {
		return
	}
	pub := mirroredPresence{presencePublisher{a.Broker}, a.Control}
	sessions := a.Presence.Snapshot().Sessions
	for _, s := range sessions {
		doc, err := json.Marshal(s)
		if err != nil {
			continue
		}
		if err := pub.PublishPresence(presence.ClientTopic(s.ID), doc, true); err != nil {
			a.Log.Warn("republish presence after rejoining the cluster", "client", s.ID, "error", err)
		}
	}
	a.Log.Info("rejoined the cluster: presence of local sessions published again", "sessions", len(sessions))
}

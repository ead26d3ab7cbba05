package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Session hand-over: a node that claimed the client id of a persistent
// session owned by another live node asks that node for the session
// (request/reply on the owner's hand-over subject), stores it, and then
// confirms, after which the owner drops its copy. Only the node that the
// ownership record names, with the epoch it holds, may fetch or confirm.

// handoverHeaderError carries a refusal in a hand-over reply.
const handoverHeaderError = "Sockmq-Handover-Error"

// handoverReserve is kept free of the NATS max payload for headers.
const handoverReserve = 4096

// HandoverHooks are what a node's hand-over service calls back into the
// broker.
type HandoverHooks struct {
	// Export ends the local connection of clientID and returns its
	// session serialized in at most maxBytes, for the node that claimed it
	// with epoch.
	Export func(clientID string, epoch uint64, maxBytes int) ([]byte, error)
	// Drop forgets the exported session: the new owner stored it.
	Drop func(clientID string, epoch uint64)
}

// handoverRequest is a fetch or a confirmation.
type handoverRequest struct {
	ClientID string `json:"client_id"`
	Epoch    uint64 `json:"epoch"`
	Node     string `json:"node"`
	Confirm  bool   `json:"confirm,omitempty"`
}

// handoverSubject is the subject on which node answers hand-over requests.
func handoverSubject(cluster, node string) string {
	return "_sockmq.handover." + subjectToken(cluster) + "." + subjectToken(node)
}

// subjectToken makes s usable as one subject token.
func subjectToken(s string) string {
	b := []byte(s)
	for i, ch := range b {
		if ch == '.' || ch == '*' || ch == '>' || ch <= ' ' {
			b[i] = '_'
		}
	}
	return string(b)
}

// ServeHandover answers this node's hand-over requests until the
// controller shuts down. Requests are served one at a time.
func (c *Controller) ServeHandover(h HandoverHooks) error {
	if h.Export == nil || h.Drop == nil {
		return errors.New("control: hand-over hooks Export and Drop are required")
	}
	nc := c.cfg.JetStream.Conn()
	sub, err := nc.Subscribe(handoverSubject(c.cfg.Cluster, c.cfg.Node), func(m *nats.Msg) { c.serveHandover(nc, h, m) })
	if err != nil {
		return unavailable("subscribe hand-over", err)
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		<-c.ctx.Done()
		_ = sub.Unsubscribe()
	}()
	return nil
}

func (c *Controller) serveHandover(nc *nats.Conn, h HandoverHooks, m *nats.Msg) {
	refuse := func(why string) {
		r := nats.NewMsg(m.Reply)
		r.Header.Set(handoverHeaderError, why)
		_ = m.RespondMsg(r)
	}
	var req handoverRequest
	if err := json.Unmarshal(m.Data, &req); err != nil || req.ClientID == "" || req.Node == "" || req.Epoch == 0 {
		refuse("malformed request")
		return
	}
	if req.Node == c.cfg.Node {
		refuse("request from this node")
		return
	}
	// The requester must hold the client id's current claim.
	e, err := c.currentClaim(req.ClientID, req.Epoch)
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			refuse("client id not claimed")
		} else {
			refuse("ownership unreadable")
		}
		return
	}
	var rec owner
	if json.Unmarshal(e.Value(), &rec) != nil || rec.Node != req.Node || e.Revision() != req.Epoch {
		c.log.Warn("hand-over refused: the requester does not hold the claim", "client", req.ClientID, "requester", req.Node, "epoch", req.Epoch)
		refuse("requester does not hold the claim with this epoch")
		return
	}
	if req.Confirm {
		h.Drop(req.ClientID, req.Epoch)
		_ = m.Respond(nil)
		return
	}
	b, err := h.Export(req.ClientID, req.Epoch, int(nc.MaxPayload())-handoverReserve)
	if err != nil {
		refuse(err.Error())
		return
	}
	if err := m.Respond(b); err != nil {
		c.log.Warn("hand-over reply not sent", "client", req.ClientID, "requester", req.Node, "error", err)
	}
}

// FetchSession asks node prev for the session of clientID, which this
// node claimed with epoch. It gives up after the controller's Timeout.
func (c *Controller) FetchSession(ctx context.Context, clientID string, epoch uint64, prev string) ([]byte, error) {
	r, err := c.handoverRequest(ctx, prev, handoverRequest{ClientID: clientID, Epoch: epoch, Node: c.cfg.Node})
	if err != nil {
		return nil, fmt.Errorf("fetch session of %s from %s: %w", clientID, prev, err)
	}
	return r.Data, nil
}

// ConfirmSession tells node prev that this node stored the session of
// clientID it fetched.
func (c *Controller) ConfirmSession(clientID string, epoch uint64, prev string) error {
	_, err := c.handoverRequest(context.Background(), prev, handoverRequest{ClientID: clientID, Epoch: epoch, Node: c.cfg.Node, Confirm: true})
	if err != nil {
		return fmt.Errorf("confirm session of %s to %s: %w", clientID, prev, err)
	}
	return nil
}

func (c *Controller) handoverRequest(ctx context.Context, node string, req handoverRequest) (*nats.Msg, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	b, _ := json.Marshal(req)
	r, err := c.cfg.JetStream.Conn().RequestWithContext(ctx, handoverSubject(c.cfg.Cluster, node), b)
	if err != nil {
		return nil, err
	}
	if why := r.Header.Get(handoverHeaderError); why != "" {
		return nil, errors.New("refused: " + why)
	}
	return r, nil
}

// OwnedElsewhere reports whether the ownership record of clientID names
// another node: a session restored here for it moved while this node was
// down. Errors report false (the session
// stays).
func (c *Controller) OwnedElsewhere(clientID string) bool {
	ctx, cancel := c.opCtx()
	defer cancel()
	e, err := c.owners.Get(ctx, ownerKey(clientID))
	if err != nil {
		return false
	}
	var rec owner
	if json.Unmarshal(e.Value(), &rec) != nil {
		return false
	}
	return rec.Node != c.cfg.Node
}

// currentClaim reads the ownership record of clientID, reading again for
// a short while when it is older than epoch (a replica may lag the claim
// the requester just made).
func (c *Controller) currentClaim(clientID string, epoch uint64) (jetstream.KeyValueEntry, error) {
	ctx, cancel := c.opCtx()
	defer cancel()
	for attempt := 0; ; attempt++ {
		e, err := c.owners.Get(ctx, ownerKey(clientID))
		if err != nil || e.Revision() >= epoch || attempt == 10 {
			return e, err
		}
		select {
		case <-ctx.Done():
			return e, nil
		case <-time.After(20 * time.Millisecond):
		}
	}
}

package control

import (
	"context"
	"encoding/json"
	"errors"

	"github.com/nats-io/nats.go/jetstream"
)

// Bridge (SocketCluster) sockets' wills live in the will store next to
// MQTT clients' wills, under the socket's node, so that the reaper of a
// dead node sends them too. A socket may hold one will per channel; the
// key's id part joins the session id and the channel with NUL bytes, which
// an MQTT client id cannot contain (MQTT strings exclude U+0000), so the
// two kinds never share a key.

// bridgeWillID is the will store id of session's will on channel.
func bridgeWillID(session, channel string) string {
	return "\x00bridge\x00" + session + "\x00" + channel
}

// PutBridgeWill stores the will of bridge socket session on channel
// (w.ClientID is set to the session id, the identity the ACL sees, and
// w.User to user). The reaper of this node sends it if the node dies.
func (c *Controller) PutBridgeWill(ctx context.Context, session, user, channel string, w Will) error {
	w.ClientID, w.User = session, user
	b, _ := json.Marshal(willRecord{Instance: c.instance, Will: w, Bridge: true})
	if _, err := c.wills.Put(ctx, nodeScoped(c.cfg.Node, bridgeWillID(session, channel)), b); err != nil {
		return unavailable("store bridge will of "+session, err)
	}
	return nil
}

// DeleteBridgeWill removes the stored will of bridge socket session on
// channel (cleared, or the socket closed cleanly). Errors are logged: the
// stale record would only be sent if this node died before restarting.
func (c *Controller) DeleteBridgeWill(session, channel string) {
	ctx, cancel := c.opCtx()
	defer cancel()
	if err := c.wills.Delete(ctx, nodeScoped(c.cfg.Node, bridgeWillID(session, channel))); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		c.log.Warn("clear bridge will", "session", session, "channel", channel, "error", err)
	}
}

// ClaimBridgeWill deletes the stored will of bridge socket session on
// channel (compare-and-set) before this node sends it, and reports whether
// it may be sent: false when a reaper already sent it. When the store
// cannot be reached the will is sent (local delivery goes on).
//
// The claim does not depend on the controller running: a socket that ends
// while the node stops still asks the store (the NATS connection outlives
// the controller), so a will a reaper already sent is never sent again.
func (c *Controller) ClaimBridgeWill(session, channel string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
	defer cancel()
	key := nodeScoped(c.cfg.Node, bridgeWillID(session, channel))
	e, err := c.wills.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false
	}
	if err == nil {
		err = c.wills.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
		if isWrongRevision(err) {
			return false
		}
	}
	if err != nil {
		c.log.Warn("will store unreachable: sending the bridge will anyway", "session", session, "error", err)
	}
	return true
}

package app

import (
	"context"
	"math"

	"github.com/sockmq/sockmq/cluster/control"
	"github.com/sockmq/sockmq/lwt"
)

// bridgeWillStore keeps bridge sockets' wills in the cluster's will store
// (as lwt.Store), so that a surviving node's reaper sends them, once, when
// this node dies.
type bridgeWillStore struct{ c *control.Controller }

var _ lwt.Store = bridgeWillStore{}

func (s bridgeWillStore) Put(o lwt.Owner, channel string, w lwt.Will) error {
	ctx, cancel := context.WithTimeout(context.Background(), control.DefaultTimeout)
	defer cancel()
	return s.c.PutBridgeWill(ctx, o.SessionID, o.Username, channel, control.Will{
		Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain,
		// The store counts whole seconds: a fraction rounds up, never
		// sending the will earlier than asked.
		Delay:       uint32(math.Ceil(w.Delay.Seconds())),
		ContentType: w.ContentType, PayloadFormat: w.PayloadFormat, HasPayloadFormat: w.HasPayloadFormat,
	})
}

func (s bridgeWillStore) Delete(o lwt.Owner, channel string) {
	s.c.DeleteBridgeWill(o.SessionID, channel)
}

func (s bridgeWillStore) Claim(o lwt.Owner, channel string) bool {
	return s.c.ClaimBridgeWill(o.SessionID, channel)
}

package app

import (
	"context"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/cluster/control"
)

var _ broker.SessionHandover = clusterSessions{}

// FetchSession asks the previous owner node for a moved client's session.
func (cs clusterSessions) FetchSession(ctx context.Context, id string, epoch uint64, prev string) ([]byte, error) {
	return cs.c.FetchSession(ctx, id, epoch, prev)
}

// ConfirmSession tells the previous owner node that the session is stored.
func (cs clusterSessions) ConfirmSession(id string, epoch uint64, prev string) error {
	return cs.c.ConfirmSession(id, epoch, prev)
}

// wireHandover drops the restored sessions whose client id moved to
// another node while this node was down, then answers the other nodes'
// requests for the sessions of clients that move away from this node.
func wireHandover(b *broker.Server, ctl *control.Controller) error {
	if n := b.DropMovedSessions(ctl.OwnedElsewhere); n > 0 {
		b.Logger().Info("restored sessions dropped: claimed on other nodes meanwhile", "sessions", n)
	}
	return ctl.ServeHandover(control.HandoverHooks{Export: b.ExportSession, Drop: b.DropExported})
}

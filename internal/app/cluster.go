package app

import (
	"context"

	"github.com/sockmq/sockmq/cluster"
	"github.com/sockmq/sockmq/config"
)

// joinCluster starts the node's cluster membership (cluster: section) and
// makes the broker one node of the cluster. Without the section it does
// nothing: no NATS, no goroutines.
func (a *App) joinCluster(cfg config.File) error {
	if cfg.Cluster == nil {
		return nil
	}
	cc := *cfg.Cluster
	if cc.Embedded != nil {
		e := *cc.Embedded
		e.StoreDir = cfg.ClusterStoreDir()
		cc.Embedded = &e
	}
	node, err := cluster.Start(context.Background(), cc, a.Log)
	if err != nil {
		return err
	}
	bp, err := cluster.NewBackplane(context.Background(), node, a.Broker, a.Metrics, a.Log)
	if err != nil {
		_ = node.Shutdown(context.Background())
		return err
	}
	a.Broker.SetBackplane(bp)
	a.Broker.AddHealth("cluster", bp.Health)
	a.Cluster, a.Backplane = node, bp
	return nil
}

// leaveCluster stops the data plane and the node (after the broker, so
// that its last wills still go out).
func (a *App) leaveCluster(ctx context.Context) error {
	if a.Cluster == nil {
		return nil
	}
	a.Backplane.Close()
	return a.Cluster.Shutdown(ctx)
}

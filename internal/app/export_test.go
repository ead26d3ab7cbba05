package app

import (
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/config"
)

// NewWithControl is New with the cluster's control state on js, for tests
// that run several nodes against one JetStream server.
func NewWithControl(cfg config.File, log *slog.Logger, js jetstream.JetStream, cluster, node string, ttl time.Duration) (*App, error) {
	return newApp(cfg, log, &controlDeps{JetStream: js, Cluster: cluster, Node: node, Replicas: 1, NodeTTL: ttl})
}

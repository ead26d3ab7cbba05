package config

import (
	"errors"
	"path/filepath"
)

// checkCluster validates the cluster: section and what cluster mode needs
// elsewhere: bridge tokens must verify on every node, so a random per-node
// signing key will not do.
func (f File) checkCluster() error {
	if f.Cluster == nil {
		return nil
	}
	errs := []error{f.Cluster.Validate()}
	if f.Bridge.Enabled && f.Bridge.AuthKey == "" {
		errs = append(errs, errors.New("bridge.auth_key: required in cluster mode (a token signed on one node must verify on every node): set the same key of at least 16 bytes on every node"))
	}
	return errors.Join(errs...)
}

// ClusterStoreDir is the embedded nats-server's JetStream directory:
// cluster.embedded.store_dir, or <persistence.data_dir>/nats when unset.
func (f File) ClusterStoreDir() string {
	if f.Cluster == nil || f.Cluster.Embedded == nil {
		return ""
	}
	if d := f.Cluster.Embedded.StoreDir; d != "" {
		return d
	}
	return filepath.Join(f.Persistence.DataDir, "nats")
}

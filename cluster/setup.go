package cluster

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// createOrUpdateStream creates a stream or brings an existing one to cfg.
// Nodes of a new cluster start together and race to create the same
// streams, and a JetStream cluster that has just elected its leader may
// answer with a timeout: both are retried until ctx ends.
func createOrUpdateStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.Stream, error) {
		return js.CreateOrUpdateStream(ctx, cfg)
	})
}

// createOrUpdateKV is createOrUpdateStream for a key-value bucket.
func createOrUpdateKV(ctx context.Context, js jetstream.JetStream, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	return retry(ctx, func(ctx context.Context) (jetstream.KeyValue, error) {
		return js.CreateOrUpdateKeyValue(ctx, cfg)
	})
}

func retry[T any](ctx context.Context, fn func(context.Context) (T, error)) (T, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := fn(actx)
		cancel()
		if err == nil {
			return v, nil
		}
		if ctx.Err() != nil || errors.Is(err, jetstream.ErrJetStreamNotEnabled) {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(250 * time.Millisecond):
		}
	}
}

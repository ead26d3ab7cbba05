package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/sockmq/sockmq/broker"
)

// QoS 1/2 messages reach this node through a durable JetStream consumer
// named after the node, not a core NATS subscription: the stream keeps
// them until this node acknowledges them, and it acknowledges a message
// only once its local copies (queued for persistent sessions) are
// committed to the broker's store. A node that was down, restarting or
// cut off from NATS resumes after its last acknowledged message.

// maxAckPending bounds the messages handed to this node and not yet
// acknowledged (JetStream stops sending beyond it).
const maxAckPending = 1024

// replayAckWait is how long JetStream waits for an acknowledgement before
// it sends a message again (one lost while the connection was down).
const replayAckWait = 10 * time.Second

// recentSeqs is how many stream sequences the duplicate check remembers.
const recentSeqs = 1 << 16

// consumerName is the durable consumer of node.
func consumerName(node string) string { return "node-" + node }

// startReplay creates (or resumes) this node's durable consumer of the
// QoS 1/2 subjects and starts the goroutine that delivers its messages.
func (b *Backplane) startReplay(ctx context.Context) error {
	cfg := jetstream.ConsumerConfig{
		Durable:           consumerName(b.cfg.Node),
		Description:       "sockmq node " + b.cfg.Node + ": QoS 1/2 messages from other nodes",
		DeliverPolicy:     jetstream.DeliverNewPolicy, // a new node starts now; a known one resumes
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           replayAckWait,
		MaxAckPending:     maxAckPending,
		FilterSubject:     subjectRoot + "." + b.cfg.Name + "." + classJS + ".>",
		InactiveThreshold: b.cfg.MessageMaxAge, // a node gone longer would find nothing left anyway
		Replicas:          b.cfg.Replicas,
	}
	cons, err := retry(ctx, func(ctx context.Context) (jetstream.Consumer, error) {
		return b.js.CreateOrUpdateConsumer(ctx, b.stream, cfg)
	})
	if err != nil {
		return fmt.Errorf("cluster: durable consumer %s: %w", cfg.Durable, err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(256))
	if err != nil {
		return fmt.Errorf("cluster: consume %s: %w", cfg.Durable, err)
	}
	b.replay, b.consumer = it, cons
	b.wg.Add(1)
	go b.consume(it)
	return nil
}

// consume hands the consumer's messages to the broker one at a time, in
// stream order (which keeps each origin's order), and acknowledges each
// once the broker has stored it. A message seen again (sent a second time
// before its acknowledgement arrived) is acknowledged and not delivered.
func (b *Backplane) consume(it jetstream.MessagesContext) {
	defer b.wg.Done()
	seen := make(map[uint64]struct{}, recentSeqs)
	ring := make([]uint64, recentSeqs)
	next := 0
	for {
		m, err := it.Next()
		if err != nil {
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return
			}
			b.log.Debug("durable consumer", "error", err)
			select {
			case <-b.stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		md, err := m.Metadata()
		if err != nil {
			_ = m.Term()
			continue
		}
		sseq := md.Sequence.Stream
		if _, dup := seen[sseq]; dup || m.Headers().Get(hdrOrigin) == b.node.Boot() {
			if dup {
				b.m.dups.Inc()
			}
			_ = m.Ack() // this node's own message: its local subscribers have it
			continue
		}
		if old := ring[next]; old != 0 {
			delete(seen, old)
		}
		ring[next] = sseq
		seen[sseq] = struct{}{}
		next = (next + 1) % recentSeqs
		b.m.in.Inc()
		for {
			err = b.target.DeliverRemoteStored(m.Data(), func() { _ = m.Ack() })
			if !errors.Is(err, broker.ErrNotRunning) {
				break
			}
			// The broker is starting (or stopping): keep the message and
			// the order until it runs.
			select {
			case <-b.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		if err != nil {
			b.log.Warn("message from another node not delivered", "subject", m.Subject(), "error", err)
		}
	}
}

// CatchUp implements broker.CatchingUp: it waits, up to
// cluster.start_timeout, until this node's durable consumer has nothing
// left to deliver or acknowledge (the messages kept while the node was
// away are stored here). Without NATS it returns at once.
func (b *Backplane) CatchUp() {
	if b.consumer == nil || !b.pub.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.StartTimeout)
	defer cancel()
	for {
		info, err := b.consumer.Info(ctx)
		if err == nil && info.NumPending == 0 && info.NumAckPending == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.log.Warn("messages kept while this node was away not all delivered before clients were accepted", "error", err)
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}

package broker_test

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
)

// slowBackplane holds every durable forward (a QoS 1/2 publish waiting for
// JetStream) until release is closed.
type slowBackplane struct {
	release chan struct{}
	once    sync.Once
	waiting chan struct{}
}

func (b *slowBackplane) Interest(string, string, bool) {}
func (b *slowBackplane) RetainedSync()                 {}
func (b *slowBackplane) Forward(f broker.Forwarded) error {
	if f.Durable {
		b.once.Do(func() { close(b.waiting) })
		<-b.release
	}
	return nil
}

// In a cluster a QoS 1/2 publish waits for the cluster to store it. That
// wait must hold up only the publisher: other clients' packets go on
// being read and answered (a poller goroutine that waited would stall
// every connection it serves).
func TestClusterPublishWaitStallsOnlyThePublisher(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b, err := broker.New(cfg, nil, nil, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	bp := &slowBackplane{release: make(chan struct{}), waiting: make(chan struct{})}
	b.SetBackplane(bp)
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	t.Cleanup(func() { close(bp.release) }) // runs before Shutdown

	pub := testutil.MustConnect5(t, b.MQTTAddr(), "waiting-publisher")
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = pub.Publish(ctx, &paho.Publish{Topic: "held/1", QoS: 1, Payload: []byte("x")})
	}()
	select {
	case <-bp.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the QoS 1 publish never reached the backplane")
	}
	// Connections are spread over the pollers in turn: with several
	// clients some share the waiting publisher's poller.
	for i := range 6 {
		id := "other-" + strconv.Itoa(i)
		c := testutil.MustConnect5(t, b.MQTTAddr(), id)
		c.Sub(t, "others/"+id, 0)
		c.Pub(t, "others/"+id, 0, false, id)
		if m := c.Next(t); string(m.Payload) != id {
			t.Fatalf("%s received %q", id, m.Payload)
		}
	}
}

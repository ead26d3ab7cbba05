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

// retainedWaitBackplane holds every retained forward (on a cluster node,
// the write of the retained copy to the cluster's store) until release is
// closed.
type retainedWaitBackplane struct {
	release chan struct{}
	once    sync.Once
	waiting chan struct{}
}

func (b *retainedWaitBackplane) Interest(string, string, bool) {}
func (b *retainedWaitBackplane) RetainedSync()                 {}
func (b *retainedWaitBackplane) Forward(f broker.Forwarded) error {
	if f.Retain {
		b.once.Do(func() { close(b.waiting) })
		<-b.release
	}
	return nil
}

// On a cluster node a delayed will that is retained waits for the
// cluster's retained store. That wait must not hold up the broker's clock:
// another client's delayed will, due meanwhile, is still sent.
func TestClusterWillWaitDoesNotHoldTheClock(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b, err := broker.New(cfg, nil, nil, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	bp := &retainedWaitBackplane{release: make(chan struct{}), waiting: make(chan struct{})}
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

	watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watcher")
	watcher.Sub(t, "gone/#", 1)
	// The session outlives the connection, so the will waits for its delay
	// on the clock.
	delay, expiry := uint32(1), uint32(60)
	withWill := func(id string, retain bool) *testutil.Client5 {
		c, _, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{
			ClientID: id, CleanStart: true,
			Properties:     &paho.ConnectProperties{SessionExpiryInterval: &expiry},
			WillMessage:    &paho.WillMessage{Topic: "gone/" + id, Payload: []byte(id), QoS: 1, Retain: retain},
			WillProperties: &paho.WillProperties{WillDelayInterval: &delay},
		})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	withWill("retained-will", true).Drop()
	select {
	case <-bp.waiting:
	case <-time.After(10 * time.Second):
		t.Fatal("the retained will never reached the backplane")
	}
	withWill("plain-will", false).Drop()
	if m := watcher.Next(t); m.Topic != "gone/plain-will" {
		t.Fatalf("watcher got %s, want gone/plain-will", m.Topic)
	}
}

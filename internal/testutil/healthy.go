package testutil

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// LossOfService is how long a healthy client may wait for an answer before
// the broker counts as not serving it.
const LossOfService = 5 * time.Second

// Healthy is a well-behaved MQTT 5 client that keeps measuring its round
// trip (a QoS 1 publish to a topic it subscribes to, until the message
// comes back) while a test floods the broker. Use it to show that one
// abusive party does not take the service away from others.
type Healthy struct {
	t    testing.TB
	c    *Client5
	stop chan struct{}
	done chan struct{}

	mu       sync.Mutex
	rtts     []time.Duration
	failures []string
}

// StartHealthy connects a client to the MQTT listener at addr and starts
// probing every interval (100ms when zero) until Stop.
func StartHealthy(t testing.TB, addr string, interval time.Duration) *Healthy {
	t.Helper()
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	id := fmt.Sprintf("healthy-%d", time.Now().UnixNano())
	h := &Healthy{t: t, c: MustConnect5(t, addr, id), stop: make(chan struct{}), done: make(chan struct{})}
	topic := "healthy/" + id
	h.c.Sub(t, topic, 1)
	go h.run(topic, interval)
	t.Cleanup(h.Stop)
	return h
}

func (h *Healthy) run(topic string, interval time.Duration) {
	defer close(h.done)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-h.stop:
			return
		case <-tick.C:
		}
		body := fmt.Sprintf("probe-%d", seq)
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), LossOfService)
		_, err := h.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Payload: []byte(body)})
		cancel()
		if err != nil {
			h.fail(fmt.Sprintf("probe %d: publish not acknowledged within %v: %v", seq, LossOfService, err))
			return
		}
		deadline := time.NewTimer(LossOfService)
	wait:
		for {
			select {
			case m := <-h.c.Msgs:
				if string(m.Payload) == body {
					break wait
				}
			case <-deadline.C:
				h.fail(fmt.Sprintf("probe %d: message not delivered within %v", seq, LossOfService))
				return
			case <-h.stop:
				deadline.Stop()
				return
			}
		}
		deadline.Stop()
		h.mu.Lock()
		h.rtts = append(h.rtts, time.Since(start))
		h.mu.Unlock()
	}
}

func (h *Healthy) fail(msg string) {
	h.mu.Lock()
	h.failures = append(h.failures, msg)
	h.mu.Unlock()
}

// Stop ends probing. Safe to call more than once.
func (h *Healthy) Stop() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// Check stops probing and fails the test if the healthy client lost
// service (an answer took longer than LossOfService) or got no answer at
// all. It returns a one-line summary of the round trips for the test log.
func (h *Healthy) Check(t testing.TB) string {
	t.Helper()
	// A flood may end before the first probe: wait for one round trip (or
	// a failure) so that the check says something about the broker.
	deadline := time.Now().Add(LossOfService + time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		n := len(h.rtts) + len(h.failures)
		h.mu.Unlock()
		if n > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	h.Stop()
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.failures) > 0 {
		t.Fatalf("healthy client lost service: %v", h.failures)
	}
	if len(h.rtts) == 0 {
		t.Fatal("healthy client completed no round trip")
	}
	s := slices.Clone(h.rtts)
	slices.Sort(s)
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	return fmt.Sprintf("healthy client: %d round trips, p50 %v, p99 %v, max %v",
		len(s), q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond), s[len(s)-1].Round(10*time.Microsecond))
}

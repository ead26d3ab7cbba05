package bridge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// refusals reads sockmq_limit_refusals_total{limit=name}.
func (st *stack) refusals(name string) float64 {
	mfs, err := st.reg.Gather()
	if err != nil {
		st.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "sockmq_limit_refusals_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == name {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestSubscribeRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.SubscribeRate = 0.001 // no refill during the test
	cfg.SubscribeBurst = 3
	st := startStack(t, cfg, nil)
	c := st.connect(t)
	for i := 1; i <= 3; i++ {
		c.Subscribe(fmt.Sprintf("rate/%d", i))
	}
	r := c.Invoke("#subscribe", map[string]any{"channel": "rate/4"})
	if testutil.ErrName(r) != bridge.ErrNameRateLimit {
		t.Fatalf("4th subscribe within the burst of 3: %s, want %s", r.Error, bridge.ErrNameRateLimit)
	}
	// Unsubscribing is never refused, and does not give tokens back.
	if r := c.Invoke("#unsubscribe", `"rate/1"`); r.Error != nil {
		t.Fatalf("unsubscribe refused: %s", r.Error)
	}
	if r := c.Invoke("#subscribe", map[string]any{"channel": "rate/1"}); testutil.ErrName(r) != bridge.ErrNameRateLimit {
		t.Fatalf("subscribe after unsubscribe: %s, want %s", r.Error, bridge.ErrNameRateLimit)
	}
	if got := st.refusals("bridge_subscribe_rate"); got != 2 {
		t.Errorf("sockmq_limit_refusals_total{limit=bridge_subscribe_rate} = %v, want 2", got)
	}
	// The limit is per socket.
	other := st.connect(t)
	other.Subscribe("rate/4")
}

func TestInvokeRateLimit(t *testing.T) {
	cfg := testConfig()
	cfg.InvokeRate = 0.001
	cfg.InvokeBurst = 2
	st := startStack(t, cfg, nil)
	var calls atomic.Int64
	st.h.RegisterProcedure("work", func(context.Context, *bridge.Session, json.RawMessage) (any, error) {
		calls.Add(1)
		return "done", nil
	})
	c := st.connect(t)
	c.Transmit("work", nil) // a transmit counts too
	if r := c.Invoke("work", nil); r.Error != nil {
		t.Fatalf("2nd call within the burst of 2: %s", r.Error)
	}
	r := c.Invoke("work", nil)
	if testutil.ErrName(r) != bridge.ErrNameRateLimit {
		t.Fatalf("3rd call: %s, want %s", r.Error, bridge.ErrNameRateLimit)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("the procedure ran %d times, want 2", n)
	}
	// Login and the protocol's own events are not procedure calls.
	if r := c.Invoke("login", map[string]string{"username": "u", "password": "p"}); r.Error != nil {
		t.Errorf("login after the invoke limit: %s", r.Error)
	}
	if got := st.refusals("bridge_invoke_rate"); got != 1 {
		t.Errorf("sockmq_limit_refusals_total{limit=bridge_invoke_rate} = %v, want 1", got)
	}
}

// countingBroker counts what the bridge asks of the broker.
type countingBroker struct {
	bridge.Broker
	subscribes, retained atomic.Int64
}

func (b *countingBroker) Subscribe(filter string, fn func(bridge.Message)) (func(), error) {
	b.subscribes.Add(1)
	return b.Broker.Subscribe(filter, fn)
}

func (b *countingBroker) Retained(id bridge.Identity, filter string) []bridge.Message {
	b.retained.Add(1)
	return b.Broker.Retained(id, filter)
}

// A frame of subscribe/unsubscribe pairs used to subscribe to the broker
// (whose subscribe walks every matching retained message) and replay the
// retained messages for every pair. A subscription that ends before the
// frame's next other request gets no replay, and a broker subscription
// outlives its last member for a moment, so the pairs cost neither.
func TestSubscribeChurnDoesNoBrokerWork(t *testing.T) {
	cb := &countingBroker{}
	st := startStackWith(t, testConfig(), nil, func(b bridge.Broker) bridge.Broker { cb.Broker = b; return cb })
	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev")
	dev.Pub(t, "churn/r", 1, true, `"retained"`)
	c := st.connect(t)

	const pairs = 100
	var b strings.Builder
	b.WriteString("[")
	for i := 0; i < pairs; i++ {
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"churn/#"},"cid":%d},{"event":"#unsubscribe","data":"churn/#"},`, 100+i)
	}
	b.WriteString(`{"event":"getSessionId","cid":99}]`)
	c.Send(b.String())
	c.Next(func(p scproto.Packet) bool { return p.RID == 99 }, "the answer after the pairs")
	if n := c.Count(func(p scproto.Packet) bool { return p.HasRID && p.RID >= 100 && p.Error == nil }); n != pairs {
		t.Fatalf("%d of %d subscribes acknowledged", n, pairs)
	}
	if n := c.Count(testutil.IsEvent("#publish")); n != 0 {
		t.Errorf("%d retained pushes for subscriptions that ended in the same frame", n)
	}
	if n := cb.subscribes.Load(); n > 1 {
		t.Errorf("%d broker subscriptions for %d subscribe/unsubscribe pairs of one channel, want at most 1", n, pairs)
	}
	if n := cb.retained.Load(); n != 0 {
		t.Errorf("%d retained lookups for subscriptions that ended in the same frame, want 0", n)
	}

	// A subscription that stays gets its retained message, once, before
	// what the same frame publishes afterwards.
	c.Send(`[{"event":"#subscribe","data":{"channel":"churn/#"},"cid":200},{"event":"#publish","data":{"channel":"churn/r2","data":"live"},"cid":201}]`)
	first := testutil.AsPub(c.Next(testutil.IsEvent("#publish"), "retained push"))
	second := testutil.AsPub(c.Next(testutil.IsEvent("#publish"), "live push"))
	if first.Topic != "churn/r" || second.Topic != "churn/r2" {
		t.Errorf("pushes in order %s, %s; want the retained churn/r before the live churn/r2", first.Topic, second.Topic)
	}
}

package lwt_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
	"github.com/sockmq/sockmq/lwt"
)

// textEncoder maps channel to topic and a JSON string to its text, as the
// bridge does for strings.
type textEncoder struct{}

func (textEncoder) EncodeWill(channel string, data json.RawMessage) (string, lwt.Encoded, error) {
	if err := broker.ValidateTopic(channel); err != nil {
		return "", lwt.Encoded{}, err
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return "", lwt.Encoded{}, errors.New("data must be a string in this test")
	}
	return channel, lwt.Encoded{Payload: []byte(s), ContentType: "text/plain", PayloadFormat: 1, HasPayloadFormat: true}, nil
}

// prefixAuth allows writes under a prefix, switchable at run time.
type prefixAuth struct{ prefix atomic.Value }

func (a *prefixAuth) MayWrite(_ lwt.Owner, topic string) bool {
	return strings.HasPrefix(topic, a.prefix.Load().(string))
}

type brokerPub struct{ b *broker.Server }

func (p brokerPub) PublishWill(w lwt.Will) error {
	return p.b.Publish(broker.Message{Topic: w.Topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain,
		ContentType: w.ContentType, PayloadFormat: w.PayloadFormat, HasPayloadFormat: w.HasPayloadFormat})
}

func setup(t *testing.T) (*broker.Server, *lwt.Registry, *prefixAuth, *testutil.Client5) {
	t.Helper()
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	a := &prefixAuth{}
	a.prefix.Store("wills/")
	r := lwt.New(lwt.Config{}, textEncoder{}, a, brokerPub{b}, nil, testutil.Logger(t))
	t.Cleanup(r.Close)
	watcher := testutil.MustConnect5(t, b.MQTTAddr(), "watcher")
	watcher.Sub(t, "#", 2)
	return b, r, a, watcher
}

func sentinel(t *testing.T, b *broker.Server, w *testutil.Client5) {
	t.Helper()
	if err := b.Publish(broker.Message{Topic: "wills/sentinel", Payload: []byte("sentinel"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	if m := w.Next(t); string(m.Payload) != "sentinel" {
		t.Fatalf("got %s %q before the sentinel", m.Topic, m.Payload)
	}
}

func TestWillOnUncleanEndOnly(t *testing.T) {
	b, r, _, watcher := setup(t)
	alice := lwt.Owner{SessionID: "s1", Username: "alice"}
	if err := r.Set(alice, lwt.Request{Channel: "wills/s1", Data: json.RawMessage(`"gone"`), Retain: true}); err != nil {
		t.Fatal(err)
	}
	r.Ended("s1", false)
	m := watcher.Next(t)
	if m.Topic != "wills/s1" || string(m.Payload) != "gone" || m.QoS != 1 || m.Properties.ContentType != "text/plain" {
		t.Fatalf("will: %s %q qos %d ct %q", m.Topic, m.Payload, m.QoS, m.Properties.ContentType)
	}
	// A clean end publishes nothing.
	bob := lwt.Owner{SessionID: "s2", Username: "bob"}
	if err := r.Set(bob, lwt.Request{Channel: "wills/s2", Data: json.RawMessage(`"gone"`)}); err != nil {
		t.Fatal(err)
	}
	r.Ended("s2", true)
	sentinel(t, b, watcher)
	// clearWill removes it.
	if err := r.Set(bob, lwt.Request{Channel: "wills/s3", Data: json.RawMessage(`"x"`)}); err != nil {
		t.Fatal(err)
	}
	r.Clear(bob, "wills/s3")
	r.Ended("s2", false)
	sentinel(t, b, watcher)
}

func TestWillPermissions(t *testing.T) {
	b, r, a, watcher := setup(t)
	o := lwt.Owner{SessionID: "s1", Username: "alice"}
	err := r.Set(o, lwt.Request{Channel: "secret/x", Data: json.RawMessage(`"x"`)})
	var e *lwt.Error
	if !errors.As(err, &e) || e.Name != "ForbiddenError" {
		t.Fatalf("will on a forbidden topic: %v", err)
	}
	for _, bad := range []lwt.Request{
		{Channel: "wills/+", Data: json.RawMessage(`"x"`)},
		{Channel: "", Data: json.RawMessage(`"x"`)},
		{Channel: "wills/x", Data: json.RawMessage(`"x"`), DelaySeconds: -1},
		{Channel: "wills/x", Data: json.RawMessage(`"x"`), DelaySeconds: 1e9},
	} {
		if err := r.Set(o, bad); !errors.As(err, &e) || e.Name != "InvalidArgumentsError" {
			t.Errorf("%+v: %v, want InvalidArgumentsError", bad, err)
		}
	}
	// Permission revoked between setWill and the end: not sent.
	if err := r.Set(o, lwt.Request{Channel: "wills/s1", Data: json.RawMessage(`"x"`)}); err != nil {
		t.Fatal(err)
	}
	a.prefix.Store("nothing/")
	r.Ended("s1", false)
	sentinel(t, b, watcher)
}

func TestDelayedWillCancelledWhenUserReturns(t *testing.T) {
	b, r, _, watcher := setup(t)
	first := lwt.Owner{SessionID: "s1", Username: "alice"}
	req := lwt.Request{Channel: "wills/alice", Data: json.RawMessage(`"offline"`), DelaySeconds: 0.3}
	if err := r.Set(first, req); err != nil {
		t.Fatal(err)
	}
	r.Ended("s1", false)
	if r.Pending() != 1 {
		t.Fatalf("pending %d", r.Pending())
	}
	// Alice's new socket sets the same will: she is back, the old one is void.
	if err := r.Set(lwt.Owner{SessionID: "s2", Username: "alice"}, req); err != nil {
		t.Fatal(err)
	}
	if r.Pending() != 0 {
		t.Fatal("pending will not cancelled by the user's new setWill")
	}
	// An anonymous socket's delayed will is sent after its delay.
	anon := lwt.Owner{SessionID: "s3"}
	if err := r.Set(anon, lwt.Request{Channel: "wills/anon", Data: json.RawMessage(`"bye"`), DelaySeconds: 0.2}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r.Ended("s3", false)
	m := watcher.Next(t)
	if m.Topic != "wills/anon" {
		t.Fatalf("got %s", m.Topic)
	}
	if d := time.Since(start); d < 190*time.Millisecond {
		t.Fatalf("delayed will sent after %v", d)
	}
	_ = b
}

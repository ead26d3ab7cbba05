package broker_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/internal/testutil"
)

// loginSession5 connects an MQTT 5 client whose session outlives its
// connection by an hour; resume=true continues the stored session.
func loginSession5(t *testing.T, addr, id, user, pass string, resume bool) (*testutil.Client5, *paho.Connack, error) {
	t.Helper()
	expiry := uint32(3600)
	return testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{
		ClientID: id, CleanStart: !resume, Username: user, UsernameFlag: true, Password: []byte(pass), PasswordFlag: true,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
	})
}

// expectNoMore publishes a sentinel that c receives and fails if anything
// arrives before it.
func expectNoMore(t *testing.T, c *testutil.Client5, pub *testutil.Client5, sentinel string) {
	t.Helper()
	pub.Pub(t, sentinel, 1, false, "sentinel")
	if m := c.Next(t); m.Topic != sentinel {
		t.Fatalf("got %s %q, want only the sentinel %s", m.Topic, m.Payload, sentinel)
	}
}

// A client id whose session belongs to another user is refused (MQTT 5
// 0x87, 3.1.1 code 5); the owner's live connection and its stored session
// are left alone. The owner may take its own session over.
func TestClientIDOfAnotherUserIsRefused(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	alice, _, err := loginSession5(t, addr, "dev-1", "alice", "apass", false)
	if err != nil {
		t.Fatal(err)
	}
	alice.Sub(t, "alice/#", 1)
	bob := mustLogin5(t, addr, "bob-pub", "bob", "bpass")

	// Live session: bob may not take it, over MQTT 5 or 3.1.1.
	if _, ca, err := loginSession5(t, addr, "dev-1", "bob", "bpass", true); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("bob connecting with alice's live client id: err %v connack %+v, want 0x87", err, ca)
	}
	_, err = testutil.Connect3(t, addr, func(o *pahov3.ClientOptions) {
		o.SetClientID("dev-1").SetUsername("bob").SetPassword("bpass").SetCleanSession(false)
	})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
		t.Fatalf("MQTT 3.1.1 bob with alice's client id: %v, want return code 5 (not authorized)", err)
	}
	select {
	case d := <-alice.Disconnected:
		t.Fatalf("alice was disconnected (0x%x) by another user's CONNECT", d.ReasonCode)
	default:
	}
	bob.Pub(t, "alice/live", 0, false, "still connected") // QoS 0: nothing left in flight to resend later
	if m := alice.Next(t); m.Topic != "alice/live" {
		t.Fatalf("alice got %s", m.Topic)
	}

	// The owner may take her own live session over, as before.
	again, ca, err := loginSession5(t, addr, "dev-1", "alice", "apass", true)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("alice taking over her own session: err %v connack %+v", err, ca)
	}
	select {
	case d := <-alice.Disconnected:
		if d.ReasonCode != 0x8E {
			t.Fatalf("replaced connection got 0x%x, want 0x8E (session taken over)", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's first connection was not told it was taken over")
	}
	expectNoMore(t, again, bob, "alice/sentinel")

	// Offline persistent session: not resumed, not wiped.
	if err := again.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitGone(t, f.b, "dev-1")
	bob.Pub(t, "alice/queued", 1, false, "kept for alice")
	if _, ca, err := loginSession5(t, addr, "dev-1", "bob", "bpass", true); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("bob resuming alice's stored session: err %v connack %+v, want 0x87", err, ca)
	}
	alice, ca, err = loginSession5(t, addr, "dev-1", "alice", "apass", true)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("alice resuming her session: err %v connack %+v, want session present", err, ca)
	}
	if m := alice.Next(t); m.Topic != "alice/queued" {
		t.Fatalf("alice got %s, want her queued message", m.Topic)
	}
}

// Queued messages are checked against the reader's current permissions when
// its session is resumed: a permission removed while the session was
// offline also removes what was queued under it.
func TestQueuedMessagesAreReadCheckedOnResume(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	alice, _, err := loginSession5(t, addr, "alice-dev", "alice", "apass", false)
	if err != nil {
		t.Fatal(err)
	}
	alice.Sub(t, "sensors/#", 1)
	alice.Sub(t, "alice/#", 1)
	if err := alice.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	testutil.WaitGone(t, f.b, "alice-dev")
	bob := mustLogin5(t, addr, "bob-pub", "bob", "bpass")
	bob.Pub(t, "sensors/open", 1, false, "still readable")
	bob.Pub(t, "sensors/lab", 1, false, "no longer readable")

	acl := strings.Replace(testACL, "topic deny sensors/private/#\n", "topic deny sensors/private/#\ntopic deny sensors/lab\n", 1)
	if err := os.WriteFile(f.aclPath, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	alice, ca, err := loginSession5(t, addr, "alice-dev", "alice", "apass", true)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("resume: err %v connack %+v", err, ca)
	}
	if m := alice.Next(t); m.Topic != "sensors/open" {
		t.Fatalf("first queued message %s %q, want sensors/open", m.Topic, m.Payload)
	}
	expectNoMore(t, alice, bob, "alice/sentinel")
}

// subscribeMany sends one SUBSCRIBE with filters and returns the SUBACK
// reason codes.
func subscribeMany(t *testing.T, c *testutil.Client5, filters ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	opts := make([]paho.SubscribeOptions, len(filters))
	for i, f := range filters {
		opts[i] = paho.SubscribeOptions{Topic: f, QoS: 1}
	}
	sa, err := c.Subscribe(ctx, &paho.Subscribe{Subscriptions: opts})
	if err != nil && sa == nil {
		t.Fatalf("subscribe %v: %v", filters, err)
	}
	return sa.Reasons
}

// Subscribing faster than limits.subscribe_rate is refused per filter with
// the protocol's quota code, counted and the client keeps being served.
func TestSubscribeRateLimit(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.SubscribeRate = 0.001 // nothing refills during the test
	cfg.Limits.SubscribeBurst = 3
	b := testutil.StartBroker(t, cfg, nil)
	c := testutil.MustConnect5(t, b.MQTTAddr(), "eager")
	if got, want := subscribeMany(t, c, "a", "b", "c", "d", "e"), []byte{1, 1, 1, 0x97, 0x97}; !bytes.Equal(got, want) {
		t.Fatalf("SUBACK %x, want %x", got, want)
	}
	c3, err := testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("eager3") })
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range []string{"a", "b", "c"} {
		if rc := c3.Sub(t, f, 1); rc != 1 {
			t.Fatalf("MQTT 3.1.1 filter %d within the burst refused: 0x%x", i, rc)
		}
	}
	if rc := c3.Sub(t, "d", 1); rc != 0x80 {
		t.Fatalf("MQTT 3.1.1 filter over the rate: 0x%x, want 0x80", rc)
	}
	waitMetric(t, b, `sockmq_limit_refusals_total{limit="subscribe_rate"} 3`)
	c.Pub(t, "a", 1, false, "served")
	if m := c.Next(t); m.Topic != "a" {
		t.Fatalf("got %s", m.Topic)
	}
}

// limits.max_subscriptions_total caps the subscriptions of all clients
// together; re-subscribing and subscribing after others left still work.
func TestSubscriptionsTotalLimit(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxSubscriptionsTotal = 3
	b := testutil.StartBroker(t, cfg, nil)
	c1 := testutil.MustConnect5(t, b.MQTTAddr(), "c1")
	c2 := testutil.MustConnect5(t, b.MQTTAddr(), "c2")
	if got := subscribeMany(t, c1, "a", "b"); !bytes.Equal(got, []byte{1, 1}) {
		t.Fatalf("c1 SUBACK %x", got)
	}
	if got, want := subscribeMany(t, c2, "c", "d"), []byte{1, 0x97}; !bytes.Equal(got, want) {
		t.Fatalf("c2 SUBACK %x, want %x (total limit 3)", got, want)
	}
	if got := subscribeMany(t, c2, "c"); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("re-subscribing an existing filter at the total limit: %x", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c1.Unsubscribe(ctx, &paho.Unsubscribe{Topics: []string{"a"}}); err != nil {
		t.Fatal(err)
	}
	if got := subscribeMany(t, c2, "d"); !bytes.Equal(got, []byte{1}) {
		t.Fatalf("subscribing after another client unsubscribed: %x", got)
	}
	waitMetric(t, b, `sockmq_limit_refusals_total{limit="max_subscriptions_total"} 1`)
}

// Retained messages replayed on SUBSCRIBE are only those the subscriber may
// read, and MQTT 5 retain handling and subscription identifiers apply.
func TestRetainedReplayFollowsACLAndOptions(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	bob := mustLogin5(t, addr, "bob-pub", "bob", "bpass")
	for _, topic := range []string{"sensors/a", "sensors/b/c", "sensors/private/x", "alice/r", "other/x", "allowed", "allowed/secret"} {
		bob.Pub(t, topic, 1, true, "retained "+topic)
	}
	alice := mustLogin5(t, addr, "alice-1", "alice", "apass")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := 7
	if _, err := alice.Subscribe(ctx, &paho.Subscribe{
		Properties:    &paho.SubscribeProperties{SubscriptionIdentifier: &id},
		Subscriptions: []paho.SubscribeOptions{{Topic: "#", QoS: 1}},
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for i := 0; i < 4; i++ {
		m := alice.Next(t)
		if !m.Retain {
			t.Errorf("%s replayed without the retain flag", m.Topic)
		}
		if m.Properties == nil || m.Properties.SubscriptionIdentifier == nil || *m.Properties.SubscriptionIdentifier != 7 {
			t.Errorf("%s replayed without subscription identifier 7", m.Topic)
		}
		got[m.Topic] = true
	}
	for _, want := range []string{"sensors/a", "sensors/b/c", "alice/r", "allowed"} {
		if !got[want] {
			t.Errorf("readable retained %s not replayed (got %v)", want, got)
		}
	}
	expectNoMore(t, alice, bob, "alice/sentinel")

	// Retain handling 2: never; 1: only for a new subscription.
	if _, err := alice.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "sensors/+", QoS: 1, RetainHandling: 2}, {Topic: "alice/#", QoS: 1, RetainHandling: 1},
	}}); err != nil {
		t.Fatal(err)
	}
	if m := alice.Next(t); m.Topic != "alice/r" {
		t.Fatalf("got %s, want alice/r once (retain handling 1, new subscription)", m.Topic)
	}
	if _, err := alice.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "alice/#", QoS: 1, RetainHandling: 1}}}); err != nil {
		t.Fatal(err)
	}
	expectNoMore(t, alice, bob, "alice/sentinel2")

	// MQTT 3.1.1 gets the same replay.
	a3, err := testutil.Connect3(t, addr, func(o *pahov3.ClientOptions) { o.SetClientID("alice-3").SetUsername("alice").SetPassword("apass") })
	if err != nil {
		t.Fatal(err)
	}
	a3.Sub(t, "sensors/#", 1)
	seen := map[string]bool{}
	for i := 0; i < 2; i++ {
		m := a3.Next(t)
		seen[m.Topic()] = m.Retained()
	}
	if !seen["sensors/a"] || !seen["sensors/b/c"] {
		t.Fatalf("MQTT 3.1.1 replay %v, want sensors/a and sensors/b/c retained", seen)
	}
}

// $SYS statistics, which the broker publishes itself, are replayed too.
func TestRetainedSysReplay(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	c := testutil.MustConnect5(t, b.MQTTAddr(), "sys")
	c.Sub(t, "$SYS/broker/version", 0)
	if m := c.Next(t); m.Topic != "$SYS/broker/version" || !m.Retain {
		t.Fatalf("got %s retain=%v", m.Topic, m.Retain)
	}
}

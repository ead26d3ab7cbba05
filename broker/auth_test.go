package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/limit"
	"github.com/sockmq/sockmq/internal/testutil"
)

const testACL = `# anonymous: nothing
user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#
topic write allowed
topic read allowed
topic write will/alice

user bob
topic readwrite #
`

type authFixture struct {
	svc     *auth.Service
	b       *broker.Server
	pwPath  string
	aclPath string
}

// startAuthBroker runs a broker with a password file (alice/apass,
// bob/bpass, carol/cpass) and testACL.
func startAuthBroker(t *testing.T) *authFixture {
	t.Helper()
	dir := t.TempDir()
	f := &authFixture{pwPath: filepath.Join(dir, "passwd"), aclPath: filepath.Join(dir, "acl")}
	var pf auth.PasswordFile
	for _, u := range [][2]string{{"alice", "apass"}, {"bob", "bpass"}, {"carol", "cpass"}} {
		if _, err := pf.Set(u[0], u[1], auth.DefaultIterations); err != nil {
			t.Fatal(err)
		}
	}
	if err := pf.Save(f.pwPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.aclPath, []byte(testACL), 0o600); err != nil {
		t.Fatal(err)
	}
	svc, err := auth.New(auth.Config{PasswordFile: f.pwPath, ACLFile: f.aclPath}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	f.svc = svc
	f.b = testutil.StartBroker(t, testutil.BrokerConfig(t), svc)
	// These tests send a few wrong passwords in a row from 127.0.0.1; the
	// growing delay on failures has its own test (abuse_proc_test.go).
	f.b.SetLoginGuard(limit.NewLoginGuard(limit.LoginGuardConfig{Free: 1000}))
	return f
}

func login5(t *testing.T, addr, id, user, pass string) (*testutil.Client5, *paho.Connack, error) {
	t.Helper()
	return testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{
		ClientID: id, CleanStart: true, Username: user, UsernameFlag: user != "", Password: []byte(pass), PasswordFlag: pass != "",
	})
}

func mustLogin5(t *testing.T, addr, id, user, pass string) *testutil.Client5 {
	t.Helper()
	c, ca, err := login5(t, addr, id, user, pass)
	if err != nil {
		t.Fatalf("login %s: %v (%+v)", user, err, ca)
	}
	return c
}

func TestAuthRefusesBadLogins(t *testing.T) {
	f := startAuthBroker(t)
	cases := []struct {
		name, user, pass string
		v5, v3           byte
		v3msg            string
	}{
		{"wrong password", "alice", "nope", 0x86, 4, "bad user name or password"},
		{"unknown user", "mallory", "apass", 0x86, 4, "bad user name or password"},
		{"no password", "alice", "", 0x86, 4, "bad user name or password"},
		{"anonymous", "", "", 0x87, 5, "not Authorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, ca, err := login5(t, f.b.MQTTAddr(), "c5", c.user, c.pass)
			if err == nil || ca == nil || ca.ReasonCode != c.v5 {
				t.Errorf("MQTT 5: err %v connack %+v, want reason 0x%x", err, ca, c.v5)
			}
			_, err = testutil.Connect3(t, f.b.MQTTAddr(), func(o *pahov3.ClientOptions) {
				o.SetClientID("c3").SetUsername(c.user).SetPassword(c.pass)
			})
			if err == nil || !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.v3msg)) {
				t.Errorf("MQTT 3.1.1: %v, want return code %d (%s)", err, c.v3, c.v3msg)
			}
		})
	}
	// The same rules hold over WebSocket.
	_, ca, err := testutil.Connect5(t, testutil.DialWS(t, f.b.HTTPAddr(), "/mqtt"), &paho.Connect{ClientID: "ws", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("nope"), PasswordFlag: true})
	if err == nil || ca.ReasonCode != 0x86 {
		t.Errorf("websocket wrong password: %v %+v", err, ca)
	}
	if _, ca, err := testutil.Connect5(t, testutil.DialWS(t, f.b.HTTPAddr(), "/mqtt"), &paho.Connect{ClientID: "ws", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("apass"), PasswordFlag: true}); err != nil {
		t.Errorf("websocket right password refused: %v %+v", err, ca)
	}
	waitMetric(t, f.b, `sockmq_connections_refused_total{reason="bad_credentials"} 7`)
	waitMetric(t, f.b, `sockmq_connections_refused_total{reason="not_authorized"} 2`)
}

func TestACLSubscribeAndPublish(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	alice := mustLogin5(t, addr, "alice-1", "alice", "apass")
	bob := mustLogin5(t, addr, "bob-1", "bob", "bpass")

	// One SUBSCRIBE with several filters: each is decided on its own.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sa, err := alice.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: "secret/x", QoS: 1}, {Topic: "sensors/#", QoS: 1}, {Topic: "$share/g/secret/#", QoS: 1}, {Topic: "alice/#", QoS: 1},
	}})
	if err != nil && sa == nil {
		t.Fatal(err)
	}
	if want := []byte{0x87, 1, 0x87, 1}; string(sa.Reasons) != string(want) {
		t.Fatalf("SUBACK reasons %x, want %x", sa.Reasons, want)
	}
	// MQTT 3.1.1: refused filters get 0x80.
	a3, err := testutil.Connect3(t, addr, func(o *pahov3.ClientOptions) { o.SetClientID("alice-3").SetUsername("alice").SetPassword("apass") })
	if err != nil {
		t.Fatal(err)
	}
	if q := a3.Sub(t, "secret/#", 1); q != 0x80 {
		t.Fatalf("MQTT 3.1.1 forbidden subscribe granted 0x%x, want 0x80", q)
	}

	// Refused publish: MQTT 5 gets PUBACK 0x87; nothing is delivered.
	bob.Sub(t, "#", 1)
	if r := alice.Pub(t, "sensors/room1", 1, false, "read-only topic"); r.ReasonCode != 0x87 {
		t.Fatalf("publish to a read-only topic: PUBACK 0x%x, want 0x87", r.ReasonCode)
	}
	if r := alice.Pub(t, "allowed/secret", 1, false, "prefix bypass"); r.ReasonCode != 0x87 {
		t.Fatalf("'topic write allowed' granted allowed/secret: PUBACK 0x%x", r.ReasonCode)
	}
	// MQTT 3.1.1: acknowledged and dropped (mosquitto's behaviour), not disconnected.
	a3.Pub(t, "sensors/room1", 1, false, "v3 read-only")
	a3.Pub(t, "alice/v3", 1, false, "v3 sentinel")
	alice.Pub(t, "alice/ok", 1, false, "sentinel")
	// Order holds per publisher only: a refused message would reach bob
	// before its publisher's sentinel, so read until both sentinels came.
	for seen := map[string]bool{}; len(seen) < 2; {
		m := bob.Next(t)
		if m.Topic != "alice/v3" && m.Topic != "alice/ok" {
			t.Fatalf("bob received %s %q; refused publishes must not be delivered", m.Topic, m.Payload)
		}
		seen[m.Topic] = true
	}
	// Delivery is read-checked: alice's "#"-like reach is only what she may read.
	alice2 := mustLogin5(t, addr, "alice-2", "alice", "apass")
	if rc := alice2.Sub(t, "#", 1); rc[0] != 1 {
		t.Fatalf("alice subscribing # (partly readable): 0x%x, want accepted", rc[0])
	}
	for _, topic := range []string{"secret/a", "sensors/private/b", "allowed/secret", "$SYS/x", "sensors/room1"} {
		bob.Pub(t, topic, 1, false, topic)
	}
	if m := alice2.Next(t); m.Topic != "sensors/room1" {
		t.Fatalf("alice subscribed to # received %s; she may read only sensors/room1 of these", m.Topic)
	}
	// A literal grant matches exactly.
	bob.Pub(t, "allowed", 1, false, "exact")
	if m := alice2.Next(t); m.Topic != "allowed" {
		t.Fatalf("got %s", m.Topic)
	}
}

func TestACLChecksRetainedMessagesOnSubscribe(t *testing.T) {
	f := startAuthBroker(t)
	bob := mustLogin5(t, f.b.MQTTAddr(), "bob", "bob", "bpass")
	bob.Pub(t, "sensors/private/key", 1, true, "secret")
	bob.Pub(t, "sensors/room1", 1, true, "21.5")
	alice := mustLogin5(t, f.b.MQTTAddr(), "alice", "alice", "apass")
	alice.Sub(t, "sensors/#", 1)
	if m := alice.Next(t); m.Topic != "sensors/room1" {
		t.Fatalf("retained delivery ignored the ACL: got %s", m.Topic)
	}
	bob.Pub(t, "sensors/room2", 1, false, "live")
	if m := alice.Next(t); m.Topic != "sensors/room2" {
		t.Fatalf("got %s after the readable retained message; the private one must never come", m.Topic)
	}
}

func TestWillToForbiddenTopicRefused(t *testing.T) {
	f := startAuthBroker(t)
	bob := mustLogin5(t, f.b.MQTTAddr(), "bob", "bob", "bpass")
	bob.Sub(t, "#", 1)
	c, ca, err := testutil.Connect5(t, testutil.Dial(t, f.b.MQTTAddr()), &paho.Connect{
		ClientID: "evil", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("apass"), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "factory/plc/cmd", Payload: []byte("EVIL_WILL"), QoS: 1},
	})
	if err == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("will to a forbidden topic: err %v connack %+v, want 0x87", err, ca)
	}
	_ = c
	_, err = testutil.Connect3(t, f.b.MQTTAddr(), func(o *pahov3.ClientOptions) {
		o.SetClientID("evil3").SetUsername("alice").SetPassword("apass").SetWill("factory/plc/cmd", "EVIL", 1, false)
	})
	if err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("MQTT 3.1.1 will to a forbidden topic: %v, want return code 5", err)
	}
	// A will on a reserved topic is refused even for a user who may write "#".
	_, ca, err = testutil.Connect5(t, testutil.Dial(t, f.b.MQTTAddr()), &paho.Connect{
		ClientID: "evil2", CleanStart: true, Username: "bob", UsernameFlag: true, Password: []byte("bpass"), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "$presence/clients/x", Payload: []byte("fake")},
	})
	if err == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("will to $presence: %v %+v", err, ca)
	}

	// A will that was allowed at CONNECT is checked again when it is sent.
	w, _, err := testutil.Connect5(t, testutil.Dial(t, f.b.MQTTAddr()), &paho.Connect{
		ClientID: "alice-will", CleanStart: true, Username: "alice", UsernameFlag: true, Password: []byte("apass"), PasswordFlag: true,
		WillMessage: &paho.WillMessage{Topic: "will/alice", Payload: []byte("gone"), QoS: 1},
	})
	if err != nil {
		t.Fatalf("allowed will refused: %v", err)
	}
	if err := os.WriteFile(f.aclPath, []byte(strings.Replace(testACL, "topic write will/alice\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reload(); err != nil {
		t.Fatal(err)
	}
	w.Drop()
	testutil.WaitGone(t, f.b, "alice-will")
	bob.Pub(t, "sentinel", 1, false, "after drop")
	if m := bob.Next(t); m.Topic != "sentinel" {
		t.Fatalf("bob got %s %q: a will whose permission was revoked was sent", m.Topic, m.Payload)
	}
}

func TestReloadRevokesUsersAndSubscriptions(t *testing.T) {
	f := startAuthBroker(t)
	addr := f.b.MQTTAddr()
	carol := mustLogin5(t, addr, "carol", "carol", "cpass")
	alice := mustLogin5(t, addr, "alice", "alice", "apass")
	alice.Sub(t, "sensors/+", 1)
	alice.Sub(t, "alice/#", 1)
	bob := mustLogin5(t, addr, "bob", "bob", "bpass")

	// Delete carol; alice loses sensors/#.
	pf, err := auth.LoadPasswordFile(f.pwPath)
	if err != nil {
		t.Fatal(err)
	}
	pf.Delete("carol")
	if err := pf.Save(f.pwPath); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(f.aclPath, []byte(strings.Replace(testACL, "topic read sensors/#\n", "", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go f.svc.Watch(ctx, 100*time.Millisecond) // a file change is enough, no SIGHUP needed
	start := time.Now()
	select {
	case d := <-carol.Disconnected:
		if d.ReasonCode != 0x87 {
			t.Fatalf("deleted user disconnected with 0x%x, want 0x87", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("deleted user still connected 5s after the password file changed")
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("revocation took %v, want within 3s (the file must first settle for auth.SettleTime)", d)
	}
	bob.Pub(t, "sensors/room1", 1, false, "no longer readable")
	bob.Pub(t, "alice/inbox", 1, false, "still readable")
	if m := alice.Next(t); m.Topic != "alice/inbox" {
		t.Fatalf("alice got %s after losing read access to sensors/#", m.Topic)
	}
	if _, ca, err := login5(t, addr, "carol2", "carol", "cpass"); err == nil || ca.ReasonCode != 0x86 {
		t.Fatalf("deleted user could log in again: %v %+v", err, ca)
	}
	// A broken file is rejected and the previous rules stay in force.
	if err := os.WriteFile(f.aclPath, []byte("user alice\ntopic bogus\x00 line\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := f.svc.Reload(); err == nil {
		t.Fatal("broken ACL file accepted")
	}
	bob.Pub(t, "alice/inbox", 1, false, "rules kept")
	if m := alice.Next(t); string(m.Payload) != "rules kept" {
		t.Fatalf("got %q", m.Payload)
	}
}

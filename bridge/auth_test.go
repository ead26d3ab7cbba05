package bridge_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

const testAuthKey = "0123456789abcdef-test-key"

var users = map[string]string{"alice": "alice-pw", "bob": "bob-pw", "device": "device-pw"}

const testACL = `
topic read public/#

user alice
topic readwrite alice/#
topic read sensors/#
topic deny sensors/private/#

user bob
topic read news/#

user device
topic readwrite #
`

// authStack starts a stack with a password file, an ACL and anonymous
// access off. It returns the stack and the directory of the two files.
func authStack(t *testing.T, cfg bridge.Config) (*stack, string) {
	t.Helper()
	dir := t.TempDir()
	return authStackOpts(t, cfg, dir, nil), dir
}

// authStackOpts is authStack with its files in dir and a hook that may
// change the bridge's options.
func authStackOpts(t *testing.T, cfg bridge.Config, dir string, mutate func(*bridge.Options)) *stack {
	t.Helper()
	no := false
	svc, err := auth.New(auth.Config{
		PasswordFile:   writeFile(t, dir, "passwd", passwd(t, users)),
		ACLFile:        writeFile(t, dir, "acl", testACL),
		AllowAnonymous: &no,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.AuthKey = testAuthKey
	return startStackOpts(t, cfg, svc, mutate)
}

func (st *stack) device(t *testing.T) *testutil.Client5 {
	t.Helper()
	c, _, err := testutil.Connect5(t, testutil.Dial(t, st.b.MQTTAddr()), &paho.Connect{
		ClientID: "device", CleanStart: true, Username: "device", UsernameFlag: true, Password: []byte(users["device"]), PasswordFlag: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// claims is a token payload in the bridge's member order.
type claims struct {
	Username string `json:"username"`
	IAT      int64  `json:"iat"`
	EXP      int64  `json:"exp"`
	JTI      string `json:"jti,omitempty"`
	Cred     string `json:"cred,omitempty"`
}

// signToken builds an HS256 token independently of the bridge.
func signToken(key string, c claims) string {
	enc := base64.RawURLEncoding
	h := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	b, _ := json.Marshal(c)
	msg := h + "." + enc.EncodeToString(b)
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return msg + "." + enc.EncodeToString(m.Sum(nil))
}

func TestAnonymousOff(t *testing.T) {
	st, _ := authStack(t, testConfig())
	st.h.RegisterProcedure("custom", func(context.Context, *bridge.Session, json.RawMessage) (any, error) { return "hi", nil })
	c := st.connect(t)
	for _, r := range []scproto.Packet{
		c.Invoke("#subscribe", `{"channel":"public/x"}`),
		c.Invoke("#publish", `{"channel":"public/x","data":1}`),
		c.Invoke("custom", 1),
	} {
		if testutil.ErrName(r) != bridge.ErrNameAuth || !strings.Contains(string(r.Error), "login") {
			t.Errorf("anonymous action answered %s", r.Error)
		}
	}
	wrong := c.Invoke("login", map[string]string{"username": "alice", "password": "nope"})
	unknown := c.Invoke("login", map[string]string{"username": "mallory", "password": "nope"})
	if testutil.ErrName(wrong) != bridge.ErrNameLogin || string(wrong.Error) != string(unknown.Error) {
		t.Errorf("bad logins: %s / %s", wrong.Error, unknown.Error)
	}
	if c.Count(testutil.IsEvent("#setAuthToken")) != 0 {
		t.Error("token sent after a failed login")
	}
	c.Login("alice", users["alice"])
	c.Subscribe("alice/x")
	if r := c.Invoke("custom", 1); string(r.Data) != `"hi"` {
		t.Errorf("procedure after login: %s %s", r.Data, r.Error)
	}
}

func TestLoginTokenLifecycle(t *testing.T) {
	st, _ := authStack(t, testConfig())
	c := st.connect(t)
	cid := c.Call("login", map[string]string{"username": "alice", "password": users["alice"]})
	// The reply comes first, then #setAuthToken.
	var order []string
	for len(order) < 2 {
		p := c.Next(func(p scproto.Packet) bool { return p.RID == cid || p.Event == "#setAuthToken" }, "login reply and token")
		if p.HasRID {
			order = append(order, "reply")
			if string(p.Data) != `{"username":"alice"}` || p.Error != nil {
				t.Errorf("login reply %s %s", p.Data, p.Error)
			}
		} else {
			order = append(order, "token")
			var d struct{ Token string }
			_ = json.Unmarshal(p.Data, &d)
			parts := strings.Split(d.Token, ".")
			if len(parts) != 3 {
				t.Fatalf("token %q", d.Token)
			}
			var got claims
			body, _ := base64.RawURLEncoding.DecodeString(parts[1])
			_ = json.Unmarshal(body, &got)
			if got.Username != "alice" || got.EXP-got.IAT != int64(bridge.DefaultTokenExpiry/time.Second) || len(got.JTI) < 16 || got.Cred == "" {
				t.Errorf("claims %s", body)
			}
			if want := signToken(testAuthKey, claims{"alice", got.IAT, got.EXP, got.JTI, got.Cred}); want != d.Token {
				t.Errorf("token is not HS256 over its claims with bridge.auth_key:\n got %s\nwant %s", d.Token, want)
			}
		}
	}
	if order[0] != "reply" {
		t.Errorf("order %v", order)
	}
	c.Subscribe("sensors/room1")

	// A new connection with the token is authenticated at handshake.
	var token string
	for _, q := range c.Packets() {
		if q.Event == "#setAuthToken" {
			var d struct{ Token string }
			_ = json.Unmarshal(q.Data, &d)
			token = d.Token
		}
	}
	c2 := st.dial(t)
	if hs := c2.Handshake(&token); hs["isAuthenticated"] != true || hs["authError"] != nil {
		t.Fatalf("handshake with token: %v", hs)
	}
	c2.Subscribe("sensors/room1")

	// #authenticate on an anonymous socket.
	c3 := st.connect(t)
	if r := c3.Invoke("#authenticate", testutil.Quote(token)); r.Error != nil || string(r.Data) != `{"isAuthenticated":true,"authError":null}` {
		t.Fatalf("#authenticate: %s %s", r.Data, r.Error)
	}
	c3.Subscribe("alice/inbox")

	// logout removes the token and the rights (and kicks out the channels
	// anonymous sockets may not read).
	if r := c3.Invoke("logout", nil); r.Error != nil {
		t.Fatal(r.Error)
	}
	c3.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken")
	k := c3.Next(testutil.IsEvent("#kickOut"), "#kickOut")
	if !strings.Contains(string(k.Data), `"channel":"alice/inbox"`) {
		t.Errorf("kickOut %s", k.Data)
	}
	if r := c3.Invoke("#subscribe", `{"channel":"alice/inbox"}`); testutil.ErrName(r) != bridge.ErrNameAuth {
		t.Errorf("after logout: %s", r.Error)
	}
	// The client's own #removeAuthToken deauthenticates too.
	c2.Transmit("#removeAuthToken", "null")
	c2.Next(testutil.IsEvent("#kickOut"), "#kickOut after #removeAuthToken")

	// Tokens survive a restart: the key is configured (or kept in the data
	// directory, see TestGeneratedKeyPersists).
}

func TestBadTokens(t *testing.T) {
	st, _ := authStack(t, testConfig())
	now := time.Now().Unix()
	cases := []struct {
		name, token, want string
	}{
		{"expired", st.h.SignTokenForTest("alice", now-100, now-10), bridge.ErrNameTokenExpired},
		{"wrong key", signToken("another key of some length", claims{"alice", now, now + 100, "id-of-sixteen-ch", "x"}), bridge.ErrNameTokenInvalid},
		{"garbage", "not.a.token", bridge.ErrNameTokenInvalid},
		{"unknown user", st.h.SignTokenForTest("mallory", now, now+100), bridge.ErrNameTokenInvalid},
		{"unbound (no jti, no cred)", signToken(testAuthKey, claims{Username: "alice", IAT: now, EXP: now + 100}), bridge.ErrNameTokenInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := st.dial(t)
			hs := c.Handshake(&tc.token)
			ae, _ := hs["authError"].(map[string]any)
			if hs["isAuthenticated"] != false || ae == nil || ae["name"] != tc.want || ae["isBadToken"] != true {
				t.Fatalf("handshake reply %v", hs)
			}
			if tc.want == bridge.ErrNameTokenExpired && ae["expiry"] == nil {
				t.Errorf("expired error without expiry: %v", ae)
			}
			c.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken")
			if r := c.Invoke("#authenticate", testutil.Quote(tc.token)); testutil.ErrName(r) != tc.want {
				t.Errorf("#authenticate: %s", r.Error)
			}
		})
	}
}

func TestTokenExpiresDuringSession(t *testing.T) {
	cfg := testConfig()
	cfg.PingInterval = 50 * time.Millisecond
	st, _ := authStack(t, cfg)
	exp := time.Now().Unix() + 2 // margin for a loaded machine: the handshake must come first
	tok := st.h.SignTokenForTest("alice", exp-2, exp)
	c := st.dial(t)
	if hs := c.Handshake(&tok); hs["isAuthenticated"] != true {
		t.Fatalf("handshake: %v", hs)
	}
	c.Subscribe("alice/x")
	// Pongs count as inbound actions: the idle socket loses its rights
	// within a ping interval of the expiry.
	c.Next(testutil.IsEvent("#removeAuthToken"), "#removeAuthToken at expiry")
	c.Next(testutil.IsEvent("#kickOut"), "#kickOut at expiry")
	if time.Now().Unix() < exp {
		t.Error("deauthenticated before the token expired")
	}
	if r := c.Invoke("#subscribe", `{"channel":"alice/x"}`); testutil.ErrName(r) != bridge.ErrNameAuth {
		t.Errorf("after expiry: %s", r.Error)
	}
}

func TestACLOnChannels(t *testing.T) {
	st, _ := authStack(t, testConfig())
	dev := st.device(t)
	dev.Sub(t, "#", 0)
	c := st.connect(t)
	c.Login("alice", users["alice"])

	// Forbidden subscribe: a clear error, and the socket stays usable.
	r := c.Invoke("#subscribe", `{"channel":"news/x"}`)
	if testutil.ErrName(r) != bridge.ErrNameForbidden || !strings.Contains(string(r.Error), "news/x") {
		t.Fatalf("forbidden subscribe: %s", r.Error)
	}
	if st.metric("sockmq_bridge_subscribes_refused_total") != 1 {
		t.Error("refused subscribe not counted")
	}

	// Partial wildcard: only readable topics are delivered.
	c.Subscribe("sensors/#")
	dev.Pub(t, "sensors/private/a", 0, false, "secret")
	dev.Pub(t, "sensors/room1", 0, false, "ok")
	p := c.NextPub("sensors/#")
	if p.Topic != "sensors/room1" {
		t.Fatalf("first delivery on the partial wildcard was %s", p.Topic)
	}
	// Retained messages are filtered the same way.
	dev.Pub(t, "sensors/private/r", 1, true, "secret")
	dev.Pub(t, "sensors/r", 1, true, "ok")
	c.NextPub("sensors/#") // live sensors/r
	c2 := st.connect(t)
	c2.Login("alice", users["alice"])
	c2.Subscribe("sensors/#")
	if p := c2.NextPub("sensors/#"); p.Topic != "sensors/r" {
		t.Errorf("retained delivery %s", p.Topic)
	}

	// Forbidden publish: invokePublish fails, transmitPublish is dropped,
	// and the MQTT subscriber receives nothing before the sentinel.
	for dev.Next(t).Topic != "sensors/r" {
	}
	if r := c.Invoke("#publish", `{"channel":"news/x","data":1}`); testutil.ErrName(r) != bridge.ErrNameForbidden {
		t.Fatalf("forbidden publish: %s", r.Error)
	}
	c.Transmit("#publish", `{"channel":"news/y","data":1}`)
	if r := c.Invoke("#publish", `{"channel":"alice/sentinel","data":1}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	if m := dev.Next(t); m.Topic != "alice/sentinel" {
		t.Fatalf("MQTT received %s before the sentinel", m.Topic)
	}
	select {
	case m := <-dev.Msgs:
		t.Fatalf("MQTT received %s after the sentinel", m.Topic)
	default:
	}
	// Nothing leaked to the socket either.
	if n := c.Count(func(p scproto.Packet) bool { return strings.Contains(testutil.AsPub(p).Topic, "private") }); n != 0 {
		t.Errorf("%d private messages leaked", n)
	}
}

func TestReloadRevokesAndKicks(t *testing.T) {
	st, dir := authStack(t, testConfig())
	pf := newPWFile(t, st, dir) // rewrites only the entries it changes
	dev := st.device(t)
	alice := st.connect(t)
	alice.Login("alice", users["alice"])
	alice.Subscribe("sensors/room1")
	alice.Subscribe("alice/inbox")
	bob := st.connect(t)
	bobTok := bob.Login("bob", users["bob"])
	bob.Subscribe("news/a")
	// The anonymous rules do not apply to users.
	if r := bob.Invoke("#subscribe", `{"channel":"public/a"}`); testutil.ErrName(r) != bridge.ErrNameForbidden {
		t.Errorf("bob subscribing to an anonymous-only channel: %s", r.Error)
	}

	// alice loses sensors/#, bob is deleted.
	writeFile(t, dir, "acl", strings.Replace(testACL, "topic read sensors/#\n", "", 1))
	delete(pf.lines, "bob")
	pf.save()

	k := alice.Next(testutil.IsEvent("#kickOut"), "alice #kickOut")
	var kd struct{ Channel, Message string }
	_ = json.Unmarshal(k.Data, &kd)
	if kd.Channel != "sensors/room1" || kd.Message == "" {
		t.Errorf("kickOut %s", k.Data)
	}
	bob.Next(testutil.IsEvent("#removeAuthToken"), "bob #removeAuthToken")
	bob.Next(func(p scproto.Packet) bool {
		return p.Event == "#kickOut" && strings.Contains(string(p.Data), "news/a")
	}, "bob kicked out of news/a")

	dev.Pub(t, "sensors/room1", 0, false, "revoked")
	dev.Pub(t, "news/a", 0, false, "revoked")
	dev.Pub(t, "alice/inbox", 0, false, "sentinel")
	if p := alice.NextPub("alice/inbox"); string(p.Data) != `"sentinel"` {
		t.Fatal(p.Data)
	}
	if n := alice.Count(func(p scproto.Packet) bool {
		return p.Event == "#publish" && testutil.AsPub(p).Channel == "sensors/room1"
	}); n != 0 {
		t.Errorf("alice received %d messages on a revoked channel", n)
	}
	// Bob is anonymous now and anonymous access is off.
	if r := bob.Invoke("#subscribe", `{"channel":"news/a"}`); testutil.ErrName(r) != bridge.ErrNameAuth {
		t.Errorf("deleted user subscribe: %s", r.Error)
	}
	if n := bob.Count(func(p scproto.Packet) bool { return p.Event == "#publish" && testutil.AsPub(p).Channel == "news/a" }); n != 0 {
		t.Errorf("bob received %d messages after deletion", n)
	}
	// His token is refused from now on.
	c := st.dial(t)
	hs := c.Handshake(&bobTok)
	if ae, _ := hs["authError"].(map[string]any); hs["isAuthenticated"] != false || ae["name"] != bridge.ErrNameTokenInvalid {
		t.Errorf("deleted user's token at handshake: %v", hs)
	}
}

func TestGeneratedKeyPersists(t *testing.T) {
	cfg := testConfig()
	st := startStack(t, cfg, nil)
	keyFile := filepath.Join(st.dir, bridge.AuthKeyFile)
	fi, err := os.Stat(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode().Perm())
	}
	c := st.connect(t)
	tok := c.Login("alice", users["alice"])

	// A second bridge on the same data directory accepts the token.
	h2, err := bridge.New(cfg, bridge.Options{Broker: app.BridgeBroker(st.b), DataDir: st.dir}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = h2
	key, _ := os.ReadFile(keyFile)
	if len(strings.TrimSpace(string(key))) != 64 {
		t.Errorf("key file holds %q", key)
	}
	c2 := st.dial(t)
	if hs := c2.Handshake(&tok); hs["isAuthenticated"] != true {
		t.Errorf("handshake: %v", hs)
	}
}

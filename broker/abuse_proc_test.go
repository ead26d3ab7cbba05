package broker_test

// Process-level abuse tests: they run the sockmq binary built without
// -race (testutil.StartProc), so CPU, round trips and RSS describe what
// users run.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/auth"
	"github.com/sockmq/sockmq/internal/testutil"
)

// startAuthProc runs sockmq with a password file of users (name→password),
// the ACL acl and anonymous access on; persistent picks whether the store
// is enabled.
func startAuthProc(t *testing.T, users map[string]string, acl string, persistent bool) *testutil.Proc {
	t.Helper()
	dir := t.TempDir()
	pw, aclPath := filepath.Join(dir, "passwd"), filepath.Join(dir, "acl")
	var pf auth.PasswordFile
	for u, p := range users {
		if _, err := pf.Set(u, p, auth.DefaultIterations); err != nil {
			t.Fatal(err)
		}
	}
	if err := pf.Save(pw); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(aclPath, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	return testutil.StartProc(t, testutil.ProcOptions{Config: func(mqttAddr, httpAddr, dataDir string) string {
		return fmt.Sprintf("listeners:\n  mqtt: {address: %q}\n  http: {address: %q}\n"+
			"persistence: {enabled: %v, data_dir: %q}\nlogging: {level: info}\n"+
			"auth: {password_file: %q, acl_file: %q, allow_anonymous: true}\n",
			mqttAddr, httpAddr, persistent, dataDir, pw, aclPath)
	}})
}

// Ownership of a client id is kept across a restart: the stored session
// records its user.
func TestClientIDOwnershipSurvivesRestart(t *testing.T) {
	p := startAuthProc(t, map[string]string{"alice": "apass", "mallory": "mpass"},
		"user alice\ntopic readwrite alice/#\nuser mallory\ntopic readwrite mallory/#\n", true)
	alice, _, err := loginSession5(t, p.MQTT, "dev-1", "alice", "apass", false)
	if err != nil {
		t.Fatal(err)
	}
	alice.Sub(t, "alice/#", 1)
	if err := alice.Disconnect(&paho.Disconnect{}); err != nil {
		t.Fatal(err)
	}
	pub := mustLogin5(t, p.MQTT, "alice-pub", "alice", "apass")
	pub.Pub(t, "alice/queued", 1, false, "for alice only")
	p.Restart(t, syscall.SIGTERM)

	if _, ca, err := loginSession5(t, p.MQTT, "dev-1", "mallory", "mpass", true); err == nil || ca == nil || ca.ReasonCode != 0x87 {
		t.Fatalf("mallory resuming alice's stored session after a restart: err %v connack %+v, want 0x87", err, ca)
	}
	_, err = testutil.Connect3(t, p.MQTT, func(o *pahov3.ClientOptions) {
		o.SetClientID("dev-1").SetUsername("mallory").SetPassword("mpass").SetCleanSession(false)
	})
	if err == nil || !strings.Contains(strings.ToLower(err.Error()), "not authorized") {
		t.Fatalf("MQTT 3.1.1 mallory with alice's client id: %v, want return code 5", err)
	}
	alice, ca, err := loginSession5(t, p.MQTT, "dev-1", "alice", "apass", true)
	if err != nil || !ca.SessionPresent {
		t.Fatalf("alice resuming after a restart: err %v connack %+v, want session present", err, ca)
	}
	if m := alice.Next(t); m.Topic != "alice/queued" {
		t.Fatalf("alice got %s, want her queued message", m.Topic)
	}
}

// rawConnect311 is an MQTT 3.1.1 CONNECT with a user name and password.
func rawConnect311(id, user, pass string) []byte {
	var body bytes.Buffer
	str := func(s string) { body.Write([]byte{byte(len(s) >> 8), byte(len(s))}); body.WriteString(s) }
	str("MQTT")
	body.Write([]byte{4, 0xC2, 0, 30}) // level 4; user, password, clean session; keepalive 30s
	str(id)
	str(user)
	str(pass)
	pk := []byte{0x10}
	for n := body.Len(); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 0x80
		}
		pk = append(pk, b)
		if n == 0 {
			break
		}
	}
	return append(pk, body.Bytes()...)
}

// tryLogin sends CONNECT on a new connection and returns the CONNACK return
// code, or an error if none arrived before deadline.
func tryLogin(addr, id, user, pass string, deadline time.Time) (byte, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write(rawConnect311(id, user, pass)); err != nil {
		return 0, err
	}
	var ack [4]byte
	if _, err := io.ReadFull(c, ack[:]); err != nil {
		return 0, err
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		return 0, fmt.Errorf("not a CONNACK: %x", ack)
	}
	return ack[3], nil
}

// Wrong passwords sent over many connections are slowed down per remote
// address, while the right password from the same address is answered at
// once and other clients keep being served.
func TestPasswordGuessingIsSlowedDown(t *testing.T) {
	p := startAuthProc(t, map[string]string{"victim": "correct horse"}, "topic readwrite healthy/#\nuser victim\ntopic readwrite victim/#\n", false)
	healthy := testutil.StartHealthy(t, p.MQTT, 0)
	const conns, window = 16, 2 * time.Second
	end := time.Now().Add(window)
	var attempts atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				rc, err := tryLogin(p.MQTT, fmt.Sprintf("guess-%d-%d", i, n), "victim", fmt.Sprintf("guess %d", n), end)
				if err == nil && rc == 4 {
					attempts.Add(1)
				}
			}
		}(i)
	}
	// The owner logs in from the same address during the flood.
	var slowest time.Duration
	for n := 0; time.Now().Before(end); n++ {
		start := time.Now()
		rc, err := tryLogin(p.MQTT, fmt.Sprintf("victim-%d", n), "victim", "correct horse", time.Now().Add(testutil.LossOfService))
		if err != nil || rc != 0 {
			t.Fatalf("correct password during the flood: rc %d err %v", rc, err)
		}
		slowest = max(slowest, time.Since(start))
		time.Sleep(100 * time.Millisecond) // pace the owner's logins; nothing is awaited here
	}
	wg.Wait()
	rate := float64(attempts.Load()) / window.Seconds()
	t.Logf("%d connections guessing for %v: %d wrong passwords answered, %.0f attempts/s; slowest correct login %v",
		conns, window, attempts.Load(), rate, slowest.Round(time.Millisecond))
	t.Log(healthy.Check(t))
	t.Logf("broker RSS %.1f MiB", float64(p.RSS(t))/(1<<20))
	if rate > 50 {
		t.Errorf("%.0f wrong passwords per second from one address, want them slowed to under 50/s", rate)
	}
	if slowest > time.Second {
		t.Errorf("a correct password took %v during the flood, want it answered at once", slowest)
	}
	if v := p.Metric(t, `sockmq_limit_refusals_total{limit="login_delay"}`); v < 1 {
		t.Errorf("login_delay refusals = %v, want the delayed failures counted", v)
	}
	if n := strings.Count(p.Output(), "authentication failed"); n > 3 {
		t.Errorf("%d log lines about failed logins during a %v flood, want them rate-limited", n, window)
	}
}

// A SUBSCRIBE to '#' costs CPU in proportion to the retained messages the
// subscriber may read, not to all retained messages: over MQTT and over
// the SocketCluster bridge.
func TestRetainedSubscribeCostFollowsWhatIsReadable(t *testing.T) {
	const retained, maxRounds = 20000, 200
	p := startAuthProc(t, map[string]string{"owner": "opass", "mallory": "mpass"},
		"topic readwrite healthy/#\nuser owner\ntopic readwrite #\nuser mallory\ntopic readwrite mallory/#\n", false)
	owner := mustLogin5(t, p.MQTT, "owner", "owner", "opass")
	start := time.Now()
	payload := bytes.Repeat([]byte("x"), 100)
	ctx := context.Background()
	for i := 0; i < retained; i++ {
		if _, err := owner.Publish(ctx, &paho.Publish{Topic: fmt.Sprintf("secret/%d/v", i), Retain: true, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	owner.Pub(t, "mallory/own", 1, true, "readable")
	testutil.WaitFor(t, 30*time.Second, func() bool { return p.Metric(t, "sockmq_retained_messages") >= retained+1 }, "20,000 retained messages")
	t.Logf("published %d retained messages in %v", retained+1, time.Since(start).Round(time.Millisecond))
	healthy := testutil.StartHealthy(t, p.MQTT, 0)

	// Each loop stops early once it has cost a second of CPU: enough to
	// measure an expensive SUBSCRIBE without waiting for all rounds.
	mallory := mustLogin5(t, p.MQTT, "mallory", "mallory", "mpass")
	cpu0 := p.CPUTime(t)
	rounds := 0
	for ; rounds < maxRounds && p.CPUTime(t)-cpu0 < time.Second; rounds++ {
		mallory.Sub(t, "#", 0)
		if m := mallory.Next(t); m.Topic != "mallory/own" {
			t.Fatalf("mallory got retained %s", m.Topic)
		}
	}
	mqttCPU := (p.CPUTime(t) - cpu0) / time.Duration(rounds)

	sc := testutil.DialSC(t, testutil.SCURL(p.HTTP), nil)
	sc.Handshake(nil)
	sc.Login("mallory", "mpass")
	cpu0 = p.CPUTime(t)
	scRounds := 0
	for ; scRounds < maxRounds && p.CPUTime(t)-cpu0 < time.Second; scRounds++ {
		sc.Subscribe("#")
		if r := sc.Invoke("#unsubscribe", testutil.Quote("#")); r.Error != nil {
			t.Fatalf("unsubscribe: %s", r.Error)
		}
	}
	bridgeCPU := (p.CPUTime(t) - cpu0) / time.Duration(scRounds)
	if n := sc.Count(testutil.IsEvent("#publish")); n != scRounds {
		t.Errorf("bridge socket got %d retained messages for %d subscriptions, want mallory/own once each", n, scRounds)
	}
	if pub := sc.NextPub("#"); pub.Topic != "mallory/own" {
		t.Fatalf("bridge replayed %q, want mallory/own", pub.Topic)
	}

	t.Logf("%d retained messages, 1 readable: CPU per SUBSCRIBE '#': MQTT %v (%d rounds), bridge %v (%d rounds, with UNSUBSCRIBE)",
		retained+1, mqttCPU.Round(time.Microsecond), rounds, bridgeCPU.Round(time.Microsecond), scRounds)
	t.Log(healthy.Check(t))
	t.Logf("broker RSS %.1f MiB", float64(p.RSS(t))/(1<<20))
	if mqttCPU > 10*time.Millisecond || bridgeCPU > 10*time.Millisecond {
		t.Errorf("a SUBSCRIBE to '#' that may read one message costs MQTT %v, bridge %v of CPU; want well under 10ms", mqttCPU, bridgeCPU)
	}
}

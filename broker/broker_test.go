package broker_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/broker"
	"github.com/sockmq/sockmq/internal/testutil"
)

func TestPubSubWildcardsAndQoS(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	plus := testutil.MustConnect5(t, b.MQTTAddr(), "sub-plus")
	hash := testutil.MustConnect5(t, b.MQTTAddr(), "sub-hash")
	if rc := plus.Sub(t, "sensors/+/temp", 2); rc[0] != 2 {
		t.Fatalf("suback for sensors/+/temp = %v, want granted QoS 2", rc)
	}
	if rc := hash.Sub(t, "sensors/#", 1); rc[0] != 1 {
		t.Fatalf("suback for sensors/# = %v, want granted QoS 1", rc)
	}
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	for qos := byte(0); qos <= 2; qos++ {
		pub.Pub(t, "sensors/room1/temp", qos, false, fmt.Sprintf("t%d", qos))
		got := plus.Next(t)
		if got.Topic != "sensors/room1/temp" || string(got.Payload) != fmt.Sprintf("t%d", qos) || got.QoS != qos {
			t.Fatalf("+ subscriber got %s %q qos %d, want sensors/room1/temp t%d qos %d", got.Topic, got.Payload, got.QoS, qos, qos)
		}
		got = hash.Next(t)
		if want := min(qos, 1); got.QoS != want || string(got.Payload) != fmt.Sprintf("t%d", qos) {
			t.Fatalf("# subscriber got %q qos %d, want qos %d (capped by its subscription)", got.Payload, got.QoS, want)
		}
	}
	// "sensors/#" also matches its parent level; "+" matches exactly one level.
	pub.Pub(t, "sensors", 1, false, "parent")
	pub.Pub(t, "sensors/room1/temp/raw", 1, false, "deep")
	if got := hash.Next(t); got.Topic != "sensors" {
		t.Fatalf("# subscriber got %s first, want the parent level sensors", got.Topic)
	}
	if got := hash.Next(t); got.Topic != "sensors/room1/temp/raw" {
		t.Fatalf("# subscriber got %s, want sensors/room1/temp/raw", got.Topic)
	}
	pub.Pub(t, "sensors/room2/temp", 0, false, "marker")
	if got := plus.Next(t); got.Topic != "sensors/room2/temp" {
		t.Fatalf("+ subscriber got %s; sensors and sensors/room1/temp/raw must not match sensors/+/temp", got.Topic)
	}
}

func TestRetainedToLateSubscriber(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	pub.Pub(t, "status/dev1", 1, true, "online")
	pub.Pub(t, "status/dev2", 1, true, "offline")
	late := testutil.MustConnect5(t, b.MQTTAddr(), "late")
	late.Sub(t, "status/+", 1)
	got := map[string]string{}
	for range 2 {
		m := late.Next(t)
		if !m.Retain {
			t.Errorf("retained message on %s delivered without the retain flag", m.Topic)
		}
		got[m.Topic] = string(m.Payload)
	}
	if got["status/dev1"] != "online" || got["status/dev2"] != "offline" {
		t.Fatalf("late subscriber got %v", got)
	}
	// An empty retained message clears it.
	pub.Pub(t, "status/dev1", 1, true, "")
	<-late.Msgs // the live empty message itself
	later := testutil.MustConnect5(t, b.MQTTAddr(), "later")
	later.Sub(t, "status/+", 0)
	if m := later.Next(t); m.Topic != "status/dev2" {
		t.Fatalf("after clearing status/dev1, got retained %s", m.Topic)
	}
}

func TestMQTT311Client(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub, err := testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("v3-sub") })
	if err != nil {
		t.Fatal(err)
	}
	if q := sub.Sub(t, "home/#", 2); q != 2 {
		t.Fatalf("granted qos %d", q)
	}
	pub, err := testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("v3-pub") })
	if err != nil {
		t.Fatal(err)
	}
	for qos := byte(0); qos <= 2; qos++ {
		pub.Pub(t, "home/kitchen", qos, false, fmt.Sprintf("q%d", qos))
		m := sub.Next(t)
		if m.Topic() != "home/kitchen" || string(m.Payload()) != fmt.Sprintf("q%d", qos) || m.Qos() != qos {
			t.Fatalf("got %s %q qos %d", m.Topic(), m.Payload(), m.Qos())
		}
	}
	// MQTT 3.1.1 and 5 clients share topics.
	v5 := testutil.MustConnect5(t, b.MQTTAddr(), "v5")
	v5.Pub(t, "home/hall", 1, false, "from v5")
	if m := sub.Next(t); string(m.Payload()) != "from v5" {
		t.Fatalf("v3 subscriber got %q", m.Payload())
	}
}

func TestMQTTOverWebSocket(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	ws, ca, err := testutil.Connect5(t, testutil.DialWS(t, b.HTTPAddr(), "/mqtt"), &paho.Connect{ClientID: "ws-client", CleanStart: true})
	if err != nil {
		t.Fatalf("connect over websocket: %v (%v)", err, ca)
	}
	ws.Sub(t, "web/#", 1)
	tcp := testutil.MustConnect5(t, b.MQTTAddr(), "tcp-client")
	tcp.Sub(t, "device/#", 1)
	tcp.Pub(t, "web/page", 1, false, "to browser")
	if m := ws.Next(t); string(m.Payload) != "to browser" {
		t.Fatalf("websocket client got %q", m.Payload)
	}
	ws.Pub(t, "device/led", 1, false, "from browser")
	if m := tcp.Next(t); string(m.Payload) != "from browser" {
		t.Fatalf("tcp client got %q", m.Payload)
	}

	// Without the "mqtt" subprotocol the upgrade is refused.
	resp, err := http.Get("http://" + b.HTTPAddr() + "/mqtt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("plain GET /mqtt: status %d, want 400", resp.StatusCode)
	}
}

func TestRestartKeepsRetainedAndQueuedMessages(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b1 := testutil.StartBroker(t, cfg, nil) // Shutdown is idempotent: the test may stop it first
	expiry := uint32(3600)
	persistent := func(addr string) (*testutil.Client5, *paho.Connack) {
		c, ca, err := testutil.Connect5(t, testutil.Dial(t, addr), &paho.Connect{
			ClientID: "persistent", CleanStart: false,
			Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry},
		})
		if err != nil {
			t.Fatalf("persistent connect: %v", err)
		}
		return c, ca
	}
	sess, _ := persistent(b1.MQTTAddr())
	sess.Sub(t, "queue/#", 1)
	if err := sess.Disconnect(&paho.Disconnect{ReasonCode: 0}); err != nil {
		t.Fatal(err)
	}
	v3, err := testutil.Connect3(t, b1.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("v3-persistent").SetCleanSession(false) })
	if err != nil {
		t.Fatal(err)
	}
	v3.Sub(t, "queue/#", 2)
	v3.Disconnect(100)

	pub := testutil.MustConnect5(t, b1.MQTTAddr(), "pub")
	pub.Pub(t, "config/site", 1, true, "retained-1")
	for i := range 3 {
		pub.Pub(t, "queue/jobs", 1, false, fmt.Sprintf("job-%d", i))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b1.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}

	b2 := testutil.StartBroker(t, cfg, nil) // same data directory and ports 0
	sess2, ca := persistent(b2.MQTTAddr())
	if !ca.SessionPresent {
		t.Fatal("persistent MQTT 5 session not present after restart")
	}
	for i := range 3 {
		m := sess2.Next(t)
		if string(m.Payload) != fmt.Sprintf("job-%d", i) || m.Topic != "queue/jobs" {
			t.Fatalf("after restart got %s %q, want queue/jobs job-%d", m.Topic, m.Payload, i)
		}
	}
	v3b, err := testutil.Connect3(t, b2.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID("v3-persistent").SetCleanSession(false) })
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if m := v3b.Next(t); string(m.Payload()) != fmt.Sprintf("job-%d", i) {
			t.Fatalf("v3 session after restart got %q, want job-%d", m.Payload(), i)
		}
	}
	// The subscription itself survived too: new messages still arrive.
	pub2 := testutil.MustConnect5(t, b2.MQTTAddr(), "pub2")
	pub2.Pub(t, "queue/jobs", 1, false, "job-new")
	if m := sess2.Next(t); string(m.Payload) != "job-new" {
		t.Fatalf("restored subscription got %q", m.Payload)
	}
	late := testutil.MustConnect5(t, b2.MQTTAddr(), "late")
	late.Sub(t, "config/#", 0)
	if m := late.Next(t); string(m.Payload) != "retained-1" {
		t.Fatalf("retained after restart: %q", m.Payload)
	}
}

func TestSilentConnectionClosedAfterConnectTimeout(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.ConnectTimeout = 300 * time.Millisecond
	b := testutil.StartBroker(t, cfg, nil)
	healthy := testutil.MustConnect5(t, b.MQTTAddr(), "healthy")
	healthy.Sub(t, "ping", 0)

	conn := testutil.Dial(t, b.MQTTAddr())
	defer conn.Close()
	start := time.Now()
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(make([]byte, 1))
	if err == nil || n != 0 {
		t.Fatalf("silent connection read %d bytes, err %v; want it closed", n, err)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("silent connection still open after 5s; connect timeout not enforced")
	}
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Fatalf("closed after %v, before the connect timeout", d)
	}
	// A client that connected normally is not affected by the connect timeout.
	healthy.Pub(t, "ping", 0, false, "still here")
	if m := healthy.Next(t); string(m.Payload) != "still here" {
		t.Fatal("healthy client lost")
	}
	waitMetric(t, b, `sockmq_connections_refused_total{reason="connect_timeout"} 1`)
}

func TestOversizedPacketRefused(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	cfg.Limits.MaxPacketSize = 1024
	b := testutil.StartBroker(t, cfg, nil)
	sub := testutil.MustConnect5(t, b.MQTTAddr(), "sub")
	sub.Sub(t, "big/#", 0)

	// A CONNECT announcing 256 MB is refused as soon as its header is read.
	raw := testutil.Dial(t, b.MQTTAddr())
	defer raw.Close()
	if _, err := raw.Write([]byte{0x10, 0xff, 0xff, 0xff, 0x7f}); err != nil {
		t.Fatal(err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(raw); err != nil {
		t.Fatalf("oversized CONNECT: connection not closed: %v", err)
	}

	// A connected client sending a too-large PUBLISH is disconnected ...
	big := testutil.MustConnect5(t, b.MQTTAddr(), "big")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, _ = big.Publish(ctx, &paho.Publish{Topic: "big/x", Payload: make([]byte, 4096)})
	select {
	case <-big.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("client that sent an oversized packet is still connected")
	}
	// ... while others keep being served.
	small := testutil.MustConnect5(t, b.MQTTAddr(), "small")
	small.Pub(t, "big/ok", 0, false, "fits")
	if m := sub.Next(t); string(m.Payload) != "fits" {
		t.Fatalf("subscriber got %q; the oversized payload must never be delivered", m.Payload)
	}
	waitMetric(t, b, `sockmq_connections_refused_total{reason="packet_too_large"} 1`)
}

func TestReservedClientIDsRefused(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	for _, id := range []string{broker.ReservedClientIDPrefix + "sockmq/internal", "$sc-abc", "$x"} {
		_, ca, err := testutil.Connect5(t, testutil.Dial(t, b.MQTTAddr()), &paho.Connect{ClientID: id, CleanStart: true})
		if err == nil || ca == nil || ca.ReasonCode != 0x85 {
			t.Errorf("client id %q: err %v connack %+v, want refusal 0x85", id, err, ca)
		}
		_, err = testutil.Connect3(t, b.MQTTAddr(), func(o *pahov3.ClientOptions) { o.SetClientID(id) })
		if err == nil || !strings.Contains(err.Error(), "identifier rejected") {
			t.Errorf("MQTT 3.1.1 client id %q: %v, want identifier rejected", id, err)
		}
	}
	// The broker's own publishing still works after the attempts.
	sub := testutil.MustConnect5(t, b.MQTTAddr(), "sub")
	sub.Sub(t, "x", 0)
	if err := b.Publish(broker.Message{Topic: "x", Payload: []byte("internal")}); err != nil {
		t.Fatal(err)
	}
	if m := sub.Next(t); string(m.Payload) != "internal" {
		t.Fatalf("got %q", m.Payload)
	}
}

func TestHealthzMetricsAndGracefulShutdown(t *testing.T) {
	cfg := testutil.BrokerConfig(t)
	b := testutil.StartBroker(t, cfg, nil) // Shutdown is idempotent: the test may stop it first
	if body := getBody(t, "http://"+b.HTTPAddr()+"/healthz"); !strings.Contains(body, `"status":"ok"`) {
		t.Fatalf("/healthz: %s", body)
	}
	c := testutil.MustConnect5(t, b.MQTTAddr(), "c")
	c.Sub(t, "m", 0)
	c.Pub(t, "m", 0, false, "x")
	c.Next(t)
	body := getBody(t, "http://"+b.HTTPAddr()+"/metrics")
	for _, name := range []string{"sockmq_clients_connected 1", "sockmq_messages_received_total 1", "sockmq_messages_sent_total", "sockmq_bytes_received_total", "sockmq_bytes_sent_total", "sockmq_messages_dropped_total 0", "sockmq_connections_refused_total"} {
		if !strings.Contains(body, name) {
			t.Errorf("/metrics lacks %q", name)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := b.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-c.Disconnected:
		if d.ReasonCode != 0x8B {
			t.Fatalf("disconnect reason 0x%x, want 0x8B server shutting down", d.ReasonCode)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("client got no DISCONNECT on shutdown")
	}
	if err := b.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", b.MQTTAddr(), time.Second); err == nil {
		t.Fatal("MQTT listener still accepting after shutdown")
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// waitMetric polls /metrics until it contains line.
func waitMetric(t *testing.T, b *broker.Server, line string) {
	t.Helper()
	var body string
	testutil.WaitFor(t, 5*time.Second, func() bool {
		body = getBody(t, "http://"+b.HTTPAddr()+"/metrics")
		return strings.Contains(body, line)
	}, "/metrics to contain "+line)
}

// An MQTT 5 QoS 1/2 publish with user properties is acknowledged with a
// valid success code (mochi used to echo the properties and send 0x01).
func TestPublishWithPropertiesIsAcknowledged(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	sub := testutil.MustConnect5(t, b.MQTTAddr(), "sub")
	sub.Sub(t, "props/#", 2)
	pub := testutil.MustConnect5(t, b.MQTTAddr(), "pub")
	for qos := byte(1); qos <= 2; qos++ {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		r, err := pub.Publish(ctx, &paho.Publish{Topic: "props/x", QoS: qos, Payload: []byte("p"),
			Properties: &paho.PublishProperties{User: paho.UserProperties{{Key: "k", Value: "v"}}, ContentType: "text/plain"}})
		cancel()
		if err != nil {
			t.Fatalf("QoS %d publish with properties: %v", qos, err)
		}
		if r.ReasonCode != 0 {
			t.Fatalf("QoS %d publish with properties: reason 0x%x, want success", qos, r.ReasonCode)
		}
		m := sub.Next(t)
		if m.Properties == nil || m.Properties.User.Get("k") != "v" || m.Properties.ContentType != "text/plain" {
			t.Fatalf("properties not forwarded: %+v", m.Properties)
		}
	}
}

// Shutdown completes while clients keep connecting and disconnecting
// (mochi's own client-closing path could deadlock on its client map).
func TestShutdownDuringConnectionChurn(t *testing.T) {
	for round := range 5 {
		b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", b.MQTTAddr(), time.Second)
				if err != nil {
					continue // shutting down
				}
				_, _ = c.Write([]byte{0x10, 0x0d, 0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 30, 0, 1, byte('a' + i%26)})
				_ = c.Close()
			}
		}()
		for range 20 {
			testutil.MustConnect5(t, b.MQTTAddr(), fmt.Sprintf("steady-%d", round))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := b.Shutdown(ctx)
		cancel()
		close(stop)
		<-done
		if err != nil {
			t.Fatalf("round %d: shutdown during churn: %v", round, err)
		}
	}
}

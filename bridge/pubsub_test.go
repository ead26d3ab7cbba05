package bridge_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

func TestMQTTToSocketCluster(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	c := st.connect(t)
	c.Subscribe("sensors/room1")
	c.Subscribe("sensors/+")
	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev1")
	dev.Pub(t, "sensors/room1", 1, false, `{"t":21.5}`)

	exact := c.NextPub("sensors/room1")
	if string(exact.Data) != `{"t":21.5}` || exact.Topic != "" {
		t.Errorf("exact channel got %+v", exact)
	}
	wild := c.NextPub("sensors/+")
	if string(wild.Data) != `{"t":21.5}` || wild.Topic != "sensors/room1" {
		t.Errorf("wildcard channel got %+v", wild)
	}
	// Unsubscribe (bare string data) stops delivery on that channel only.
	c.Transmit("#unsubscribe", `"sensors/+"`)
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.h.BrokerSubscriptions() == 1 }, "one broker subscription left")
	dev.Pub(t, "sensors/room1", 1, false, `2`)
	c.NextPub("sensors/room1")
	if n := c.Count(func(p scproto.Packet) bool { return p.Event == "#publish" && testutil.AsPub(p).Channel == "sensors/+" }); n != 1 {
		t.Errorf("%d pushes on the unsubscribed wildcard", n)
	}
}

func TestSocketClusterToMQTT(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	sub := testutil.MustConnect5(t, st.b.MQTTAddr(), "sub1")
	sub.Sub(t, "sensors/#", 1)
	c := st.connect(t)
	c.Subscribe("sensors/out")

	// invokePublish: acknowledged after the broker has fanned out, QoS 1.
	if r := c.Invoke("#publish", `{"channel":"sensors/out","data":{"v":1}}`); r.Error != nil {
		t.Fatal(r.Error)
	}
	m := sub.Next(t)
	if m.Topic != "sensors/out" || string(m.Payload) != `{"v":1}` || m.QoS != 1 || m.Properties.ContentType != "application/json" {
		t.Errorf("MQTT got %s %q qos %d ct %q", m.Topic, m.Payload, m.QoS, m.Properties.ContentType)
	}
	// The publisher gets its own message (SocketCluster does the same).
	if p := c.NextPub("sensors/out"); string(p.Data) != `{"v":1}` {
		t.Errorf("publisher got %s", p.Data)
	}
	// transmitPublish: QoS 0.
	c.Transmit("#publish", `{"channel":"sensors/out","data":"x"}`)
	if m := sub.Next(t); m.QoS != 0 || string(m.Payload) != "x" {
		t.Errorf("transmitPublish reached MQTT as qos %d %q", m.QoS, m.Payload)
	}
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.metric("sockmq_bridge_messages_in_total") == 2 }, "messages_in 2")
}

func TestTopicPrefix(t *testing.T) {
	cfg := testConfig()
	cfg.TopicPrefix = "sc/"
	st := startStack(t, cfg, nil)
	sub := testutil.MustConnect5(t, st.b.MQTTAddr(), "sub1")
	sub.Sub(t, "#", 0)
	c := st.connect(t)
	c.Subscribe("room/+")
	c.Invoke("#publish", `{"channel":"room/1","data":1}`)
	if m := sub.Next(t); m.Topic != "sc/room/1" {
		t.Errorf("MQTT topic %s, want sc/room/1", m.Topic)
	}
	if p := c.NextPub("room/+"); p.Topic != "room/1" {
		t.Errorf("push topic %q, want the channel name room/1", p.Topic)
	}
}

func TestInvalidChannels(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	sub := testutil.MustConnect5(t, st.b.MQTTAddr(), "sub1")
	sub.Sub(t, "#", 0)
	c := st.connect(t)
	long := make([]byte, 70000)
	for i := range long {
		long[i] = 'a'
	}
	cases := []struct {
		name, channel, want string
	}{
		{"wildcard +", "sensors/+", bridge.ErrNameInvalidChannel},
		{"wildcard #", "sensors/#", bridge.ErrNameInvalidChannel},
		{"empty", "", bridge.ErrNameInvalidChannel},
		{"NUL", "a\x00b", bridge.ErrNameInvalidChannel},
		{"too long", string(long), bridge.ErrNameInvalidChannel},
		{"$SYS", "$SYS/broker/x", bridge.ErrNameForbidden},
		{"$presence", "$presence/x", bridge.ErrNameForbidden},
		{"$sockmq", "$sockmq", bridge.ErrNameForbidden},
	}
	for _, tc := range cases {
		r := c.Invoke("#publish", map[string]any{"channel": tc.channel, "data": 1})
		if testutil.ErrName(r) != tc.want {
			t.Errorf("%s: publish answered %s, want %s", tc.name, r.Error, tc.want)
		}
		c.Transmit("#publish", map[string]any{"channel": tc.channel, "data": 1}) // dropped silently
	}
	// Invalid UTF-8 cannot be sent through JSON text by a real client (a
	// text frame carrying it closes the socket with 1007), but a binary
	// frame can carry it.
	c.SendFrame(websocket.BinaryMessage, []byte("{\"event\":\"#publish\",\"data\":{\"channel\":\"bad\xff\",\"data\":1},\"cid\":900}"))
	cid := int64(900)
	if r := c.Next(func(p scproto.Packet) bool { return p.RID == cid }, "ack"); r.Error == nil {
		t.Error("publish to a non-UTF-8 channel accepted")
	}
	for _, ch := range []string{"a/b#", "a/#/b", "a+/b", ""} {
		if r := c.Invoke("#subscribe", map[string]any{"channel": ch}); testutil.ErrName(r) != bridge.ErrNameInvalidChannel {
			t.Errorf("subscribe %q answered %s", ch, r.Error)
		}
	}
	// A sentinel proves nothing refused reached MQTT.
	c.Invoke("#publish", `{"channel":"sentinel","data":1}`)
	if m := sub.Next(t); m.Topic != "sentinel" {
		t.Errorf("MQTT received %s before the sentinel", m.Topic)
	}
	if got := st.metric("sockmq_bridge_publishes_refused_total"); got < float64(2*len(cases)) {
		t.Errorf("publishes_refused_total = %v", got)
	}
}

// publishMQTT5 publishes with MQTT 5 properties.
func publishMQTT5(t *testing.T, c *testutil.Client5, topic string, payload []byte, ct string, pfi *byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p := &paho.Publish{Topic: topic, QoS: 1, Payload: payload}
	if ct != "" || pfi != nil {
		p.Properties = &paho.PublishProperties{ContentType: ct, PayloadFormat: pfi}
	}
	if _, err := c.Publish(ctx, p); err != nil {
		t.Fatalf("publish %s: %v", topic, err)
	}
}

func TestPayloadMapping(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	mq := testutil.MustConnect5(t, st.b.MQTTAddr(), "mq")
	mq.Sub(t, "pay/#", 1)
	pubSC := st.connect(t)
	peer := st.connect(t)
	peer.Subscribe("pay/+")
	one := byte(1)
	bin := []byte{1, 2, 3, 0xff}
	b64 := base64.StdEncoding.EncodeToString(bin)

	// SC → MQTT → SC.
	scCases := []struct {
		name, data  string // JSON as the client sends it
		payload     []byte
		ct          string
		pfi         bool
		peerGetsRaw string // what another SC client receives
	}{
		{"string 42", `"42"`, []byte("42"), "text/plain", true, `"42"`},
		{"string like JSON", `"{\"a\":1}"`, []byte(`{"a":1}`), "text/plain", true, `"{\"a\":1}"`},
		{"unicode string", `"grüße ✓ \u2028"`, []byte("grüße ✓ \u2028"), "text/plain", true, `"grüße ✓ \u2028"`},
		{"object", `{"a":1}`, []byte(`{"a":1}`), "application/json", true, `{"a":1}`},
		{"array", `[1,"x",null]`, []byte(`[1,"x",null]`), "application/json", true, `[1,"x",null]`},
		{"number", `42`, []byte(`42`), "application/json", true, `42`},
		{"bool", `true`, []byte(`true`), "application/json", true, `true`},
		{"null", `null`, []byte(`null`), "application/json", true, `null`},
		{"buffer", `{"base64":true,"data":"` + b64 + `"}`, bin, "application/octet-stream", false, `{"base64":true,"data":"` + b64 + `"}`},
		{"not quite binary", `{"base64":true,"data":"` + b64 + `","x":1}`, []byte(`{"base64":true,"data":"` + b64 + `","x":1}`), "application/json", true, `{"base64":true,"data":"` + b64 + `","x":1}`},
		{"absent data", ``, []byte(`null`), "application/json", true, `null`},
	}
	for i, tc := range scCases {
		topic := fmt.Sprintf("pay/sc%d", i)
		frame := `{"channel":"` + topic + `"}`
		if tc.data != "" {
			frame = `{"channel":"` + topic + `","data":` + tc.data + `}`
		}
		if r := pubSC.Invoke("#publish", frame); r.Error != nil {
			t.Fatalf("%s: %s", tc.name, r.Error)
		}
		m := mq.Next(t)
		gotPFI := m.Properties.PayloadFormat != nil && *m.Properties.PayloadFormat == 1
		if m.Topic != topic || string(m.Payload) != string(tc.payload) || m.Properties.ContentType != tc.ct || gotPFI != tc.pfi {
			t.Errorf("%s: MQTT got %s %q ct %q pfi %v; want %q ct %q pfi %v", tc.name, m.Topic, m.Payload, m.Properties.ContentType, gotPFI, tc.payload, tc.ct, tc.pfi)
		}
		p := peer.NextPub("pay/+")
		if p.Topic != topic || string(p.Data) != tc.peerGetsRaw {
			t.Errorf("%s: SC peer got %s %s, want %s", tc.name, p.Topic, p.Data, tc.peerGetsRaw)
		}
	}

	// MQTT → SC.
	mqCases := []struct {
		name    string
		payload []byte
		ct      string
		pfi     *byte
		want    string
	}{
		{"JSON object", []byte(`{"t":21.5,"ok":true}`), "", nil, `{"t":21.5,"ok":true}`},
		{"JSON number", []byte(`42`), "", nil, `42`},
		{"JSON string", []byte(`"quoted"`), "", nil, `"quoted"`},
		{"JSON with white space", []byte(" {\"a\":1}\n"), "", nil, `{"a":1}`},
		{"text", []byte("hello wörld"), "", nil, `"hello wörld"`},
		{"broken JSON", []byte(`{not json`), "", nil, `"{not json"`},
		{"empty", []byte{}, "", nil, `""`},
		{"binary", []byte{0xff, 0xfe, 0, 1}, "", nil, `{"base64":true,"data":"//4AAQ=="}`},
		{"text/plain keeps 42 a string", []byte("42"), "text/plain", &one, `"42"`},
		{"text/plain; charset", []byte("42"), "text/plain; charset=utf-8", nil, `"42"`},
		{"application/json", []byte(`[1]`), "application/json", nil, `[1]`},
		{"application/json but not JSON", []byte(`nope`), "application/json", nil, `"nope"`},
		{"octet-stream of text", []byte(`{"a":1}`), "application/octet-stream", nil, `{"base64":true,"data":"` + base64.StdEncoding.EncodeToString([]byte(`{"a":1}`)) + `"}`},
		{"other content type", []byte(`7`), "image/png", nil, `7`},
		{"text/plain with bad UTF-8", []byte{0xc3}, "text/plain", nil, `{"base64":true,"data":"ww=="}`},
	}
	for i, tc := range mqCases {
		topic := fmt.Sprintf("pay/mq%d", i)
		publishMQTT5(t, mq, topic, tc.payload, tc.ct, tc.pfi)
		mq.Next(t) // its own subscription
		p := peer.NextPub("pay/+")
		var got, want any
		if err := json.Unmarshal(p.Data, &got); err != nil {
			t.Errorf("%s: invalid JSON pushed: %s", tc.name, p.Data)
			continue
		}
		_ = json.Unmarshal([]byte(tc.want), &want)
		if p.Topic != topic || testutil.MustJSON(got) != testutil.MustJSON(want) {
			t.Errorf("%s: SC got %s, want %s", tc.name, p.Data, tc.want)
		}
	}
}

func TestRetainedOnSubscribe(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	early := st.connect(t)
	early.Subscribe("ret/+")
	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev")
	dev.Pub(t, "ret/a", 1, true, "A")
	dev.Pub(t, "ret/b", 1, true, `{"b":2}`)
	early.NextPub("ret/+")
	early.NextPub("ret/+")

	late := st.connect(t)
	late.Subscribe("ret/+")
	got := map[string]string{}
	for range 2 {
		p := late.NextPub("ret/+")
		got[p.Topic] = string(p.Data)
	}
	if got["ret/a"] != `"A"` || got["ret/b"] != `{"b":2}` {
		t.Errorf("retained on subscribe: %v", got)
	}
	late.Subscribe("ret/a")
	if p := late.NextPub("ret/a"); string(p.Data) != `"A"` {
		t.Errorf("retained on exact channel: %s", p.Data)
	}
	// The sockets already subscribed get no replay.
	late.Invoke("#publish", `{"channel":"ret/c","data":"sentinel"}`)
	if p := early.NextPub("ret/+"); p.Topic != "ret/c" {
		t.Errorf("early socket got %s before the sentinel", p.Topic)
	}
	// Retained messages also come from SC publishers (retained is an MQTT
	// notion: SC publishes are not retained).
	if n := len(st.b.Retained("ret/c")); n != 0 {
		t.Errorf("an SC publish was retained")
	}
}

func TestOneBrokerSubscriptionPerFilter(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	var cs []*scClient
	for range 3 {
		c := st.connect(t)
		c.Subscribe("shared/x")
		c.Subscribe("shared/+")
		cs = append(cs, c)
	}
	if n := st.h.BrokerSubscriptions(); n != 2 {
		t.Fatalf("%d broker subscriptions for 2 distinct filters", n)
	}
	if st.metric("sockmq_bridge_broker_subscriptions") != 2 {
		t.Errorf("gauge %v", st.metric("sockmq_bridge_broker_subscriptions"))
	}
	dev := testutil.MustConnect5(t, st.b.MQTTAddr(), "dev")
	dev.Pub(t, "shared/x", 0, false, "1")
	for _, c := range cs {
		c.NextPub("shared/x")
		c.NextPub("shared/+")
	}
	cs[0].Transmit("#unsubscribe", `"shared/x"`)
	_ = cs[1].Conn().Close() // dropped connection: its channels are left too
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.h.Sockets() == 2 }, "dropped socket cleaned up")
	if n := st.h.BrokerSubscriptions(); n != 2 {
		t.Fatalf("%d broker subscriptions while socket 2 still holds both", n)
	}
	cs[2].Transmit("#unsubscribe", `"shared/x"`)
	testutil.WaitFor(t, 2*time.Second, func() bool { return st.h.BrokerSubscriptions() == 1 }, "last member leaves shared/x")
}

func TestMaxSubscriptions(t *testing.T) {
	cfg := testConfig()
	cfg.MaxSubscriptions = 2
	st := startStack(t, cfg, nil)
	c := st.connect(t)
	c.Subscribe("m/1")
	c.Subscribe("m/2")
	c.Subscribe("m/2") // already subscribed: acknowledged, not counted
	if r := c.Invoke("#subscribe", `{"channel":"m/3"}`); testutil.ErrName(r) != bridge.ErrNameBroker {
		t.Fatalf("third channel: %s", r.Error)
	}
	c.Transmit("#unsubscribe", `"m/1"`)
	c.Subscribe("m/3")
}

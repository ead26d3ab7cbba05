package bridge_test

import (
	"testing"

	"github.com/gorilla/websocket"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/testutil"
)

// A text frame must be UTF-8 (RFC 6455 §8.1): one that is not closes the
// socket with 1007 and nothing of it reaches MQTT. Bytes that are not UTF-8
// (from a binary frame) are never published with the UTF-8 payload format
// indicator.
func TestInvalidUTF8(t *testing.T) {
	st := startStack(t, testConfig(), nil)
	mq := testutil.MustConnect5(t, st.b.MQTTAddr(), "mq")
	mq.Sub(t, "utf8/#", 1)
	const badJSON = "{\"event\":\"#publish\",\"data\":{\"channel\":\"utf8/text\",\"data\":{\"a\":\"\xff\xfe\"}},\"cid\":2}"

	c := st.connect(t)
	c.SendFrame(websocket.TextMessage, []byte(badJSON))
	if code, _ := c.WaitClose(); code != bridge.CloseInvalidPayload {
		t.Fatalf("text frame with invalid UTF-8: closed with %d, want %d", code, bridge.CloseInvalidPayload)
	}

	// The same bytes in a binary frame: published, without the indicator.
	b := st.connect(t)
	b.SendFrame(websocket.BinaryMessage, []byte(badJSON))
	b.Invoke("#publish", map[string]any{"channel": "utf8/sentinel", "data": 1})
	m := mq.Next(t)
	if m.Topic != "utf8/text" {
		t.Fatalf("first MQTT message on %s (%q): the binary frame's publish is missing, or the text frame's was forwarded", m.Topic, m.Payload)
	}
	if pf := m.Properties.PayloadFormat; pf != nil && *pf == 1 {
		t.Errorf("payload %q that is not UTF-8 was published with payload format indicator 1", m.Payload)
	}
	if m := mq.Next(t); m.Topic != "utf8/sentinel" {
		t.Fatalf("unexpected message on %s", m.Topic)
	}
}

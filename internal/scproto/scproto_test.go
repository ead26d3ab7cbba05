package scproto_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sockmq/sockmq/internal/scproto"
)

func TestDecodeKinds(t *testing.T) {
	cases := []struct {
		in   string
		kind scproto.Kind
		n    int
	}{
		{"", scproto.KindEmpty, 0},
		{"#1", scproto.KindPingV1, 0},
		{"#2", scproto.KindPongV1, 0},
		{"#3", scproto.KindRaw, 0},
		{"hello", scproto.KindRaw, 0},
		{"   ", scproto.KindRaw, 0},
		{`{"event":`, scproto.KindRaw, 0},
		{`{"event":"x"} trailing`, scproto.KindRaw, 0},
		{`"a string"`, scproto.KindRaw, 0},
		{`42`, scproto.KindRaw, 0},
		{`{}`, scproto.KindPackets, 1},
		{` {"event":"x"}`, scproto.KindPackets, 1},
		{`[]`, scproto.KindPackets, 0},
		{`[{"event":"a"},1,"x",{"rid":2}]`, scproto.KindPackets, 2},
	}
	for _, c := range cases {
		f := scproto.Decode([]byte(c.in))
		if f.Kind != c.kind || len(f.Packets) != c.n {
			t.Errorf("Decode(%q) = %v with %d packets, want %v with %d", c.in, f.Kind, len(f.Packets), c.kind, c.n)
		}
	}
}

func TestDecodePackets(t *testing.T) {
	cases := []struct {
		in   string
		want scproto.Packet
	}{
		{`{"event":"#handshake","data":{"authToken":null},"cid":1}`,
			scproto.Packet{Event: "#handshake", HasEvent: true, Data: json.RawMessage(`{"authToken":null}`), CID: 1, HasCID: true}},
		{`{"event":"#unsubscribe","data":"news"}`,
			scproto.Packet{Event: "#unsubscribe", HasEvent: true, Data: json.RawMessage(`"news"`)}},
		{`{"event":"#removeAuthToken"}`, scproto.Packet{Event: "#removeAuthToken", HasEvent: true}},
		{`{"event":"x","data":null}`, scproto.Packet{Event: "x", HasEvent: true, Data: json.RawMessage(`null`)}},
		{`{"rid":7,"data":{"a":[1,2]}}`, scproto.Packet{RID: 7, HasRID: true, Data: json.RawMessage(`{"a":[1,2]}`)}},
		{`{"rid":8,"error":{"name":"E","message":"m"}}`, scproto.Packet{RID: 8, HasRID: true, Error: json.RawMessage(`{"name":"E","message":"m"}`)}},
		{`{"event":"e\u0041\n","cid":3.0}`, scproto.Packet{Event: "eA\n", HasEvent: true, CID: 3, HasCID: true}},
		{`{"event":5,"cid":"1"}`, scproto.Packet{}},
		{`{"event":"x","cid":1.5}`, scproto.Packet{Event: "x", HasEvent: true}},
		{`{"event":"x","cid":1e3}`, scproto.Packet{Event: "x", HasEvent: true, CID: 1000, HasCID: true}},
	}
	for _, c := range cases {
		f := scproto.Decode([]byte(c.in))
		if f.Kind != scproto.KindPackets || len(f.Packets) != 1 {
			t.Fatalf("Decode(%q): %+v", c.in, f)
		}
		if !reflect.DeepEqual(f.Packets[0], c.want) {
			t.Errorf("Decode(%q) =\n %+v, want\n %+v", c.in, f.Packets[0], c.want)
		}
	}
}

func TestDecodeBatch(t *testing.T) {
	in := `[{"event":"#subscribe","data":{"channel":"c"},"cid":2},{"event":"#subscribe","data":{"channel":"a","data":{"since":5}},"cid":3}]`
	f := scproto.Decode([]byte(in))
	if !f.Batch || len(f.Packets) != 2 || f.Packets[0].CID != 2 || f.Packets[1].CID != 3 || string(f.Packets[1].Data) != `{"channel":"a","data":{"since":5}}` {
		t.Fatalf("batch decoded as %+v", f)
	}
}

func TestEncode(t *testing.T) {
	e := &scproto.Error{Name: "AuthTokenInvalidError", Message: "invalid token", Fields: map[string]any{"isBadToken": true, "name": "ignored", "a": 1}}
	cases := []struct{ got, want string }{
		{string(scproto.AppendEvent(nil, "#removeAuthToken", nil)), `{"event":"#removeAuthToken"}`},
		{string(scproto.AppendEvent(nil, "#setAuthToken", []byte(`{"token":"x"}`))), `{"event":"#setAuthToken","data":{"token":"x"}}`},
		{string(scproto.AppendInvoke(nil, "p", []byte(`1`), 4)), `{"event":"p","data":1,"cid":4}`},
		{string(scproto.AppendPublish(nil, "news", "", []byte(`{"a":1}`))), `{"event":"#publish","data":{"channel":"news","data":{"a":1}}}`},
		{string(scproto.AppendPublish(nil, "s/+", "s/1", nil)), `{"event":"#publish","data":{"channel":"s/+","topic":"s/1","data":null}}`},
		{string(scproto.AppendResponse(nil, 3, nil)), `{"rid":3}`},
		{string(scproto.AppendResponse(nil, 3, []byte(`"x"`))), `{"rid":3,"data":"x"}`},
		{string(scproto.AppendErrorResponse(nil, 4, e)), `{"rid":4,"error":{"name":"AuthTokenInvalidError","message":"invalid token","a":1,"isBadToken":true}}`},
		{string(scproto.AppendBatch(nil, [][]byte{[]byte(`{"rid":1}`), []byte(`{"rid":2}`)})), `[{"rid":1},{"rid":2}]`},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("got  %s\nwant %s", c.got, c.want)
		}
	}
}

func TestAppendStringMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "plain", `q"b\`, "ctl\x00\x01\x1f\n\r\t", "é€𝄞", "bad\xffutf8\xc3", "\u2028\u2029", "<&>"} {
		got := scproto.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: invalid JSON: %v", s, got, err)
		}
		want := strings.ToValidUTF8(s, "\uFFFD")
		if utf8.ValidString(s) && back != s || back != want {
			t.Errorf("AppendString(%q) round-trips to %q", s, back)
		}
	}
}

func TestDataString(t *testing.T) {
	if s, ok := scproto.DataString(json.RawMessage(`"a\"b"`)); !ok || s != `a"b` {
		t.Fatalf("DataString: %q %v", s, ok)
	}
	if _, ok := scproto.DataString(json.RawMessage(`{"channel":"x"}`)); ok {
		t.Fatal("object accepted as string")
	}
}

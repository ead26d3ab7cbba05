package bridge

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"mime"
	"strings"
	"unicode/utf8"

	"github.com/sockmq/sockmq/internal/scproto"
)

// Content types of the payload mapping (see README.md).
const (
	ContentTypeText   = "text/plain"
	ContentTypeJSON   = "application/json"
	ContentTypeBinary = "application/octet-stream"
)

// toMQTT maps the data of an SC publish to an MQTT message body:
//
//   - a JSON string becomes its UTF-8 bytes, content type text/plain,
//     payload format indicator 1;
//   - exactly {"base64":true,"data":"<standard base64>"} (how
//     socketcluster-client sends a Buffer or ArrayBuffer) becomes the
//     decoded bytes, application/octet-stream;
//   - any other JSON value (absent data counts as null) becomes its JSON
//     text, application/json, payload format indicator 1.
//
// The indicator is set only when the payload is valid UTF-8: text frames
// are checked on arrival (1007 otherwise), but binary frames are not.
func toMQTT(data json.RawMessage) Message {
	data = bytes.TrimSpace(data)
	if len(data) == 0 {
		return Message{Payload: []byte("null"), ContentType: ContentTypeJSON, PayloadFormat: 1, HasPayloadFormat: true}
	}
	switch data[0] {
	case '"':
		if s, ok := scproto.DataString(data); ok {
			return Message{Payload: []byte(s), ContentType: ContentTypeText, PayloadFormat: 1, HasPayloadFormat: true}
		}
	case '{':
		if b, ok := binaryObject(data); ok {
			return Message{Payload: b, ContentType: ContentTypeBinary}
		}
	}
	p := make([]byte, len(data))
	copy(p, data)
	if !utf8.Valid(p) {
		return Message{Payload: p, ContentType: ContentTypeJSON}
	}
	return Message{Payload: p, ContentType: ContentTypeJSON, PayloadFormat: 1, HasPayloadFormat: true}
}

// binaryObject recognises {"base64":true,"data":"..."} with exactly those
// two members and decodes it.
func binaryObject(data []byte) ([]byte, bool) {
	if !bytes.Contains(data, []byte(`"base64"`)) {
		return nil, false
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(data, &m) != nil || len(m) != 2 || string(m["base64"]) != "true" {
		return nil, false
	}
	s, ok := scproto.DataString(m["data"])
	if !ok {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, false
	}
	return b, true
}

// mediaType returns the lower-case media type of a content type, without
// parameters.
func mediaType(ct string) string {
	if ct == ContentTypeText || ct == ContentTypeJSON || ct == ContentTypeBinary {
		return ct // fast path: what the bridge itself publishes
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return strings.ToLower(strings.TrimSpace(ct))
	}
	return mt
}

// toSC maps an MQTT message body to the JSON value SC subscribers receive
// as the publish data:
//
//   - content type text/plain (or any text/*) and valid UTF-8: a JSON
//     string;
//   - content type application/json (or */*+json) and valid JSON: the JSON
//     value itself;
//   - content type application/octet-stream: {"base64":true,"data":...};
//   - otherwise (no content type, another one, or a body that does not
//     fit its content type): a valid JSON body is embedded as is, other
//     valid UTF-8 becomes a JSON string, anything else the base64 object.
//
// The result is appended to dst.
func toSC(dst []byte, m *Message) []byte {
	p := m.Payload
	if m.ContentType != "" {
		switch mt := mediaType(m.ContentType); {
		case mt == ContentTypeBinary:
			return appendBase64(dst, p)
		case strings.HasPrefix(mt, "text/"):
			if utf8.Valid(p) {
				return appendBytesString(dst, p)
			}
		case mt == ContentTypeJSON || strings.HasSuffix(mt, "+json"):
			if utf8.Valid(p) && json.Valid(p) {
				return append(dst, bytes.TrimSpace(p)...)
			}
		}
	}
	if !utf8.Valid(p) {
		return appendBase64(dst, p)
	}
	if json.Valid(p) {
		return append(dst, bytes.TrimSpace(p)...)
	}
	return appendBytesString(dst, p)
}

func appendBase64(dst, p []byte) []byte {
	dst = append(dst, `{"base64":true,"data":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, p)
	return append(dst, `"}`...)
}

// appendBytesString appends valid UTF-8 p as a JSON string.
func appendBytesString(dst, p []byte) []byte {
	return scproto.AppendString(dst, unsafeString(p))
}

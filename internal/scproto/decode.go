package scproto

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unicode/utf8"
)

// Ping and pong frames. They are not JSON.
const (
	// PingV2 is the empty frame: protocol v2 (client 15+) uses it both as
	// ping (server to client) and pong (client to server).
	PingV2 = ""
	// PingV1 is the protocol v1 (client up to 14) ping, server to client.
	PingV1 = "#1"
	// PongV1 is the protocol v1 pong, client to server.
	PongV1 = "#2"
)

// Kind says what a decoded frame is.
type Kind uint8

const (
	// KindPackets is a JSON object or array: see [Frame.Packets].
	KindPackets Kind = iota
	// KindEmpty is the empty frame: a protocol v2 ping or pong.
	KindEmpty
	// KindPingV1 is "#1", the protocol v1 ping.
	KindPingV1
	// KindPongV1 is "#2", the protocol v1 pong.
	KindPongV1
	// KindRaw is anything else: text that is not a JSON object or array,
	// or invalid JSON. sc-formatter hands such frames to the application
	// as a raw string.
	KindRaw
)

// String returns a short name for k.
func (k Kind) String() string {
	switch k {
	case KindPackets:
		return "packets"
	case KindEmpty:
		return "empty"
	case KindPingV1:
		return "ping-v1"
	case KindPongV1:
		return "pong-v1"
	}
	return "raw"
}

// Frame is one decoded WebSocket text message.
type Frame struct {
	// Kind says what the frame is.
	Kind Kind
	// Packets holds the packets of a KindPackets frame, in order. Array
	// elements that are not JSON objects are left out.
	Packets []Packet
	// Batch is true when the frame was a JSON array.
	Batch bool
}

// Packet is one SocketCluster packet: an event (transmit), an event with a
// cid (invoke, which needs exactly one response), or a response with a rid.
// Fields that were absent are zero; the Has flags tell them apart from
// explicit values.
type Packet struct {
	// Event is the event or procedure name; HasEvent is false when the
	// packet had no string "event" field.
	Event    string
	HasEvent bool
	// Data is the raw JSON of the "data" field, nil when absent.
	Data json.RawMessage
	// CID is the call id of an invoke; HasCID is false when the packet had
	// no integer "cid" field (it is then a transmit).
	CID    int64
	HasCID bool
	// RID is the id of the call this packet answers; HasRID is false when
	// the packet had no integer "rid" field.
	RID    int64
	HasRID bool
	// Error is the raw JSON of the "error" field of a response, nil when
	// absent.
	Error json.RawMessage
}

// IsInvoke reports whether p is an event that expects a response.
func (p *Packet) IsInvoke() bool { return p.HasEvent && p.HasCID }

// wirePacket is the JSON shape of a packet; fields stay raw so that a
// value of the wrong type does not fail the whole frame.
type wirePacket struct {
	Event json.RawMessage `json:"event"`
	Data  json.RawMessage `json:"data"`
	CID   json.RawMessage `json:"cid"`
	RID   json.RawMessage `json:"rid"`
	Error json.RawMessage `json:"error"`
}

// Decode decodes one frame. It never fails: text that is not a JSON object
// or array, or not valid JSON, is [KindRaw], as sc-formatter does. The
// returned packets' Data and Error alias b.
func Decode(b []byte) Frame {
	switch len(b) {
	case 0:
		return Frame{Kind: KindEmpty}
	case 2:
		if b[0] == '#' {
			switch b[1] {
			case '1':
				return Frame{Kind: KindPingV1}
			case '2':
				return Frame{Kind: KindPongV1}
			}
		}
	}
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return Frame{Kind: KindRaw}
	}
	switch t[0] {
	case '{':
		var w wirePacket
		if json.Unmarshal(t, &w) != nil {
			return Frame{Kind: KindRaw}
		}
		return Frame{Kind: KindPackets, Packets: []Packet{w.packet()}}
	case '[':
		var elems []json.RawMessage
		if json.Unmarshal(t, &elems) != nil {
			return Frame{Kind: KindRaw}
		}
		ps := make([]Packet, 0, len(elems))
		for _, e := range elems {
			if len(e) == 0 || e[0] != '{' {
				continue
			}
			var w wirePacket
			if json.Unmarshal(e, &w) != nil {
				continue // cannot happen: the array was valid JSON
			}
			ps = append(ps, w.packet())
		}
		return Frame{Kind: KindPackets, Packets: ps, Batch: true}
	}
	return Frame{Kind: KindRaw}
}

func (w *wirePacket) packet() Packet {
	var p Packet
	if len(w.Event) > 0 && w.Event[0] == '"' {
		if s, ok := unquote(w.Event); ok {
			p.Event, p.HasEvent = s, true
		}
	}
	if !isNull(w.Data) {
		p.Data = w.Data
	}
	p.CID, p.HasCID = parseID(w.CID)
	p.RID, p.HasRID = parseID(w.RID)
	if !isNull(w.Error) {
		p.Error = w.Error
	}
	return p
}

// isNull reports whether raw is absent. An explicit null is kept as data
// ("null"): only a missing field is nil. encoding/json leaves a RawMessage
// nil for a missing field and sets it to "null" for an explicit null.
func isNull(raw json.RawMessage) bool { return raw == nil }

// unquote decodes a JSON string literal, with a fast path for strings
// without escapes.
func unquote(raw []byte) (string, bool) {
	if len(raw) >= 2 && raw[len(raw)-1] == '"' {
		in := raw[1 : len(raw)-1]
		if bytes.IndexByte(in, '\\') < 0 && bytes.IndexByte(in, '"') < 0 && utf8.Valid(in) {
			return string(in), true
		}
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// parseID reads an integer cid or rid. Numbers with a fraction, strings and
// other values are not ids.
func parseID(raw []byte) (int64, bool) {
	if len(raw) == 0 || !(raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9')) {
		return 0, false
	}
	if n, err := strconv.ParseInt(string(raw), 10, 64); err == nil {
		return n, true
	}
	// JavaScript numbers may arrive as 1e3 or 3.0.
	f, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// DataString decodes data as a JSON string. ok is false when data is not a
// string.
func DataString(data json.RawMessage) (s string, ok bool) {
	if len(data) == 0 || data[0] != '"' {
		return "", false
	}
	return unquote(data)
}

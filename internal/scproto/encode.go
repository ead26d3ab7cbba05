package scproto

import (
	"encoding/json"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Error is a SocketCluster error object: it goes on the wire as
// {"name":..,"message":..} followed by Fields, which the client copies onto
// the Error it rebuilds (for example isBadToken or expiry).
type Error struct {
	Name    string
	Message string
	// Fields are extra properties. Keys "name" and "message" are ignored;
	// values are encoded with encoding/json (unencodable values become
	// null).
	Fields map[string]any
}

// AppendJSON appends e as a JSON object. Fields are written in key order so
// that the output is deterministic.
func (e *Error) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"name":`...)
	dst = AppendString(dst, e.Name)
	dst = append(dst, `,"message":`...)
	dst = AppendString(dst, e.Message)
	if len(e.Fields) > 0 {
		keys := make([]string, 0, len(e.Fields))
		for k := range e.Fields {
			if k != "name" && k != "message" {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		for _, k := range keys {
			dst = append(dst, ',')
			dst = AppendString(dst, k)
			dst = append(dst, ':')
			v, err := json.Marshal(e.Fields[k])
			if err != nil {
				v = []byte("null")
			}
			dst = append(dst, v...)
		}
	}
	return append(dst, '}')
}

// AppendEvent appends a transmit {"event":event,"data":data}. A nil data
// leaves "data" out. data must be valid JSON.
func AppendEvent(dst []byte, event string, data []byte) []byte {
	dst = append(dst, `{"event":`...)
	dst = AppendString(dst, event)
	if data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

// AppendInvoke appends an invoke {"event":event,"data":data,"cid":cid}.
func AppendInvoke(dst []byte, event string, data []byte, cid int64) []byte {
	dst = AppendEvent(dst, event, data)
	dst = dst[:len(dst)-1]
	dst = append(dst, `,"cid":`...)
	dst = strconv.AppendInt(dst, cid, 10)
	return append(dst, '}')
}

// AppendPublish appends the push of a channel message,
// {"event":"#publish","data":{"channel":channel,"data":data}}, with an extra
// "topic" member after "channel" when topic is not empty. data must be
// valid JSON; nil is written as null.
func AppendPublish(dst []byte, channel, topic string, data []byte) []byte {
	dst = append(dst, `{"event":"#publish","data":{"channel":`...)
	dst = AppendString(dst, channel)
	if topic != "" {
		dst = append(dst, `,"topic":`...)
		dst = AppendString(dst, topic)
	}
	dst = append(dst, `,"data":`...)
	if data == nil {
		data = []byte("null")
	}
	dst = append(dst, data...)
	return append(dst, `}}`...)
}

// AppendResponse appends a successful response {"rid":rid,"data":data}; a
// nil data gives {"rid":rid}.
func AppendResponse(dst []byte, rid int64, data []byte) []byte {
	dst = append(dst, `{"rid":`...)
	dst = strconv.AppendInt(dst, rid, 10)
	if data != nil {
		dst = append(dst, `,"data":`...)
		dst = append(dst, data...)
	}
	return append(dst, '}')
}

// AppendErrorResponse appends a failed response {"rid":rid,"error":{...}}.
func AppendErrorResponse(dst []byte, rid int64, e *Error) []byte {
	dst = append(dst, `{"rid":`...)
	dst = strconv.AppendInt(dst, rid, 10)
	dst = append(dst, `,"error":`...)
	dst = e.AppendJSON(dst)
	return append(dst, '}')
}

// AppendBatch appends frames (each one JSON object) as one JSON array.
func AppendBatch(dst []byte, frames [][]byte) []byte {
	dst = append(dst, '[')
	for i, f := range frames {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, f...)
	}
	return append(dst, ']')
}

const hexDigits = "0123456789abcdef"

// AppendString appends s as a JSON string literal. Invalid UTF-8 becomes
// U+FFFD, control characters and U+2028/U+2029 are escaped, as
// encoding/json does (without its HTML escaping).
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

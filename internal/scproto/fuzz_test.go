package scproto_test

import (
	"encoding/json"
	"strconv"
	"testing"

	"github.com/sockmq/sockmq/internal/scproto"
)

// reencode writes the packets of f back as a frame.
func reencode(f scproto.Frame) []byte {
	frames := make([][]byte, 0, len(f.Packets))
	for _, p := range f.Packets {
		b := []byte{'{'}
		sep := func() {
			if len(b) > 1 {
				b = append(b, ',')
			}
		}
		if p.HasEvent {
			sep()
			b = append(b, `"event":`...)
			b = scproto.AppendString(b, p.Event)
		}
		if p.Data != nil {
			sep()
			b = append(append(b, `"data":`...), p.Data...)
		}
		if p.HasCID {
			sep()
			b = append(b, `"cid":`...)
			b = strconv.AppendInt(b, p.CID, 10)
		}
		if p.HasRID {
			sep()
			b = append(b, `"rid":`...)
			b = strconv.AppendInt(b, p.RID, 10)
		}
		if p.Error != nil {
			sep()
			b = append(append(b, `"error":`...), p.Error...)
		}
		frames = append(frames, append(b, '}'))
	}
	if f.Batch {
		return scproto.AppendBatch(nil, frames)
	}
	return frames[0]
}

func checkDecode(t *testing.T, b []byte) {
	f := scproto.Decode(b)
	if f.Kind != scproto.KindPackets {
		if len(f.Packets) != 0 {
			t.Fatalf("%v frame with packets", f.Kind)
		}
		return
	}
	if !f.Batch && len(f.Packets) != 1 {
		t.Fatalf("object frame decoded to %d packets", len(f.Packets))
	}
	if len(f.Packets) == 0 {
		return
	}
	// Whatever was decoded re-encodes to JSON that decodes the same.
	again := reencode(f)
	if !json.Valid(again) {
		t.Fatalf("re-encoded frame is not JSON: %s", again)
	}
	g := scproto.Decode(again)
	if len(g.Packets) != len(f.Packets) {
		t.Fatalf("re-decoded %d packets, want %d", len(g.Packets), len(f.Packets))
	}
	for i := range f.Packets {
		a, c := f.Packets[i], g.Packets[i]
		if a.Event != c.Event || a.HasEvent != c.HasEvent || a.CID != c.CID || a.HasCID != c.HasCID || a.RID != c.RID || a.HasRID != c.HasRID {
			t.Fatalf("packet %d changed: %+v -> %+v", i, a, c)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		``, `#1`, `#2`, `{"event":"#publish","data":{"channel":"a","data":1},"cid":2}`,
		`[{"event":"#subscribe","data":{"channel":"c"},"cid":2},{"event":"#publish","data":{"channel":"a","data":2}}]`,
		`{"rid":1,"error":{"name":"E","message":"m"}}`, `{"event":"\u00e9\ud834\udd1e","cid":1e2}`, `[1,"x",{}]`, `{"event":`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		checkDecode(t, b)
		// A frame split in two halves (as a stream reader might see it)
		// must not break the decoder either.
		h := len(b) / 2
		checkDecode(t, b[:h])
		checkDecode(t, b[h:])
	})
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"b", "\xff", "\u2028", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		b := scproto.AppendString(nil, s)
		var back string
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, b, err)
		}
		want, _ := json.Marshal(s)
		var viaStd string
		_ = json.Unmarshal(want, &viaStd)
		if back != viaStd {
			t.Fatalf("AppendString(%q) decodes to %q, encoding/json gives %q", s, back, viaStd)
		}
	})
}

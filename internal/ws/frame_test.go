package ws

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"
)

// clientFrame builds a masked client frame.
func clientFrame(op Opcode, fin bool, payload []byte, key [4]byte) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	var f []byte
	switch n := len(payload); {
	case n <= 125:
		f = []byte{b0, 0x80 | byte(n)}
	case n <= 0xffff:
		f = []byte{b0, 0x80 | 126, byte(n >> 8), byte(n)}
	default:
		f = []byte{b0, 0x80 | 127, 0, 0, 0, 0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	}
	f = append(f, key[:]...)
	for i, c := range payload {
		f = append(f, c^key[i&3])
	}
	return f
}

type got struct {
	op Opcode
	p  string
}

// Messages and control frames come out whole and in order whatever the
// pieces the bytes arrive in: single bytes, random cuts, all at once.
func TestReaderPieces(t *testing.T) {
	key := [4]byte{0x12, 0x34, 0x56, 0x78}
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80,000 bytes: 64-bit length
	mid := bytes.Repeat([]byte("x"), 300)                 // 16-bit length
	var stream []byte
	stream = append(stream, clientFrame(OpText, true, []byte(`{"event":"#handshake","cid":1}`), key)...)
	stream = append(stream, clientFrame(OpText, false, []byte("hel"), key)...)
	stream = append(stream, clientFrame(OpPing, true, []byte("p"), key)...) // between fragments
	stream = append(stream, clientFrame(OpContinuation, false, []byte("lo "), key)...)
	stream = append(stream, clientFrame(OpContinuation, true, []byte("world"), key)...)
	stream = append(stream, clientFrame(OpText, true, nil, key)...) // SC v2 pong: empty
	stream = append(stream, clientFrame(OpBinary, true, big, key)...)
	stream = append(stream, clientFrame(OpText, true, mid, key)...)
	stream = append(stream, clientFrame(OpClose, true, []byte{0x03, 0xe8, 'b', 'y', 'e'}, key)...)
	want := []got{
		{OpText, `{"event":"#handshake","cid":1}`}, {OpPing, "p"}, {OpText, "hello world"}, {OpText, ""},
		{OpBinary, string(big)}, {OpText, string(mid)}, {OpClose, "\x03\xe8bye"},
	}
	cuts := map[string]func(int) int{
		"whole":  func(int) int { return len(stream) },
		"bytes":  func(int) int { return 1 },
		"random": func(int) int { return 1 + rand.IntN(700) },
	}
	for name, cut := range cuts {
		t.Run(name, func(t *testing.T) {
			in := bytes.Clone(stream)
			var out []got
			r := Reader{MaxMessage: 1 << 20}
			for len(in) > 0 {
				n := min(cut(len(in)), len(in))
				if err := r.Feed(in[:n], func(op Opcode, p []byte) error {
					out = append(out, got{op, string(p)})
					return nil
				}); err != nil {
					t.Fatal(err)
				}
				in = in[n:]
			}
			if len(out) != len(want) {
				t.Fatalf("got %d frames, want %d", len(out), len(want))
			}
			for i := range want {
				if out[i] != want[i] {
					t.Errorf("frame %d: op %d %.40q, want op %d %.40q", i, out[i].op, out[i].p, want[i].op, want[i].p)
				}
			}
			if r.Pending() || r.msg != nil {
				t.Errorf("reader holds state after complete frames")
			}
		})
	}
}

// Protocol violations fail with the close code the server must send.
func TestReaderViolations(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	unmasked := clientFrame(OpText, true, []byte("hi"), key)
	unmasked[1] &^= 0x80
	rsv := clientFrame(OpText, true, []byte("hi"), key)
	rsv[0] |= 0x40
	cases := map[string]struct {
		in   []byte
		code int
	}{
		"unmasked":             {unmasked, CloseProtocolError},
		"reserved bits":        {rsv, CloseProtocolError},
		"too big":              {clientFrame(OpText, true, make([]byte, 1001), key), CloseMessageTooBig},
		"too big in fragments": {append(clientFrame(OpText, false, make([]byte, 600), key), clientFrame(OpContinuation, true, make([]byte, 600), key)...), CloseMessageTooBig},
		"fragmented ping":      {clientFrame(OpPing, false, nil, key), CloseProtocolError},
		"long ping":            {clientFrame(OpPing, true, make([]byte, 126), key), CloseProtocolError},
		"lone continuation":    {clientFrame(OpContinuation, true, []byte("x"), key), CloseProtocolError},
		"interleaved message":  {append(clientFrame(OpText, false, []byte("a"), key), clientFrame(OpText, true, []byte("b"), key)...), CloseProtocolError},
		"unknown opcode":       {clientFrame(Opcode(3), true, nil, key), CloseProtocolError},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			r := Reader{MaxMessage: 1000}
			err := r.Feed(c.in, func(Opcode, []byte) error { return nil })
			var pe *ProtocolError
			if !errors.As(err, &pe) || pe.Code != c.code {
				t.Fatalf("err %v, want close %d", err, c.code)
			}
		})
	}
}

func TestParseAndAppendClose(t *testing.T) {
	f := AppendClose(nil, 4001, "Client pong timed out")
	if f[0] != 0x88 || int(f[1]) != len(f)-2 {
		t.Fatalf("header % x", f[:2])
	}
	code, reason, err := ParseClose(f[2:])
	if err != nil || code != 4001 || reason != "Client pong timed out" {
		t.Fatalf("%d %q %v", code, reason, err)
	}
	long := AppendClose(nil, 1000, string(bytes.Repeat([]byte("é"), 100)))
	if len(long)-2 > 125 {
		t.Fatalf("close payload %d bytes", len(long)-2)
	}
	if _, _, err := ParseClose(long[2:]); err != nil {
		t.Fatalf("cut reason not UTF-8: %v", err)
	}
	if code, _, err := ParseClose(nil); err != nil || code != CloseNoStatus {
		t.Fatalf("empty close: %d %v", code, err)
	}
	if _, _, err := ParseClose([]byte{0x03, 0xed}); err == nil { // 1005 may not be sent
		t.Fatal("1005 accepted")
	}
}

package ws

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Opcode is a WebSocket frame opcode.
type Opcode byte

// Opcodes of RFC 6455 §5.2.
const (
	OpContinuation Opcode = 0
	OpText         Opcode = 1
	OpBinary       Opcode = 2
	OpClose        Opcode = 8
	OpPing         Opcode = 9
	OpPong         Opcode = 10
)

// IsControl reports whether op is a control opcode (close, ping, pong).
func (op Opcode) IsControl() bool { return op >= OpClose }

// Close codes of RFC 6455 §7.4.1 that this package produces.
const (
	CloseNormal          = 1000
	CloseProtocolError   = 1002
	CloseNoStatus        = 1005
	CloseAbnormal        = 1006
	CloseInvalidPayload  = 1007
	CloseMessageTooBig   = 1009
	maxControlPayload    = 125
	maxCloseReasonLength = maxControlPayload - 2
)

// ProtocolError is a violation of the protocol by the client: the
// connection must be closed with Code.
type ProtocolError struct {
	Code   int
	Reason string
}

func (e *ProtocolError) Error() string { return fmt.Sprintf("ws: %s (close %d)", e.Reason, e.Code) }

func protoErr(code int, reason string) *ProtocolError {
	return &ProtocolError{Code: code, Reason: reason}
}

// Reader decodes client frames from bytes fed to it in any pieces. The
// zero value is ready; set MaxMessage first. An idle Reader (between
// frames) holds no buffer.
type Reader struct {
	// MaxMessage is the largest message accepted, in bytes (a fragmented
	// message counts whole). Beyond it Feed fails with 1009 as soon as the
	// frame header announces the excess. Zero means no limit.
	MaxMessage int

	hdr    [14]byte
	hn     uint8 // header bytes gathered
	inBody bool  // the header is complete; the payload is arriving
	op     Opcode
	fin    bool
	mask   [4]byte
	mpos   int    // payload bytes of the frame unmasked so far
	flen   int    // payload length of the frame
	msgOp  Opcode // opcode of the fragmented message being assembled (0: none)
	msg    []byte // the data gathered for the current message
	ctl    []byte // the payload gathered for the current control frame
}

// Feed decodes p and calls fn with each complete message (OpText or
// OpBinary, fragments joined) and each control frame (OpClose, OpPing,
// OpPong), in order. p is unmasked in place; the payload handed to fn is
// valid only during the call (it may be p itself). Feed returns fn's
// first error, or a *ProtocolError for a frame that breaks the protocol;
// the Reader must not be used after an error.
func (r *Reader) Feed(p []byte, fn func(op Opcode, payload []byte) error) error {
	for len(p) > 0 {
		if !r.inBody {
			n, err := r.header(p)
			if err != nil {
				return err
			}
			p = p[n:]
			if !r.inBody {
				return nil // the header continues in the next piece
			}
			if r.flen == 0 {
				if err := r.frameDone(nil, fn); err != nil {
					return err
				}
			}
			continue
		}
		left := r.flen - r.mpos
		k := min(left, len(p))
		chunk := p[:k]
		p = p[k:]
		unmask(r.mask, r.mpos, chunk)
		whole := r.mpos == 0 && k == r.flen
		r.mpos += k
		switch {
		case whole && (r.op.IsControl() || (r.fin && r.msgOp == 0)):
			// The whole frame is in this piece: no copy.
		case r.op.IsControl():
			r.ctl = append(r.ctl, chunk...)
			chunk = nil
		default:
			if r.msg == nil {
				r.msg = make([]byte, 0, min(r.flen, 64<<10))
			}
			r.msg = append(r.msg, chunk...)
			chunk = nil
		}
		if r.mpos == r.flen {
			if err := r.frameDone(chunk, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// header gathers and checks a frame header from p; it returns how many
// bytes of p it used.
func (r *Reader) header(p []byte) (int, error) {
	used := 0
	need := 2
	for {
		if int(r.hn) < need {
			k := copy(r.hdr[r.hn:need], p[used:])
			r.hn += uint8(k)
			used += k
			if int(r.hn) < need {
				return used, nil
			}
		}
		if need == 2 {
			// Refuse at once what the first two bytes show to be wrong:
			// an unmasked frame has no masking key to wait for.
			if r.hdr[0]&0x70 != 0 {
				r.hn = 0
				return used, protoErr(CloseProtocolError, "reserved bits set (no extension was negotiated)")
			}
			if r.hdr[1]&0x80 == 0 {
				r.hn = 0
				return used, protoErr(CloseProtocolError, "client frame not masked")
			}
			need = 2 + 4
			switch r.hdr[1] & 0x7f {
			case 126:
				need += 2
			case 127:
				need += 8
			}
			continue
		}
		break
	}
	b0, b1 := r.hdr[0], r.hdr[1]
	r.hn = 0
	op, fin := Opcode(b0&0x0f), b0&0x80 != 0
	var n uint64
	var maskAt int
	switch l := b1 & 0x7f; l {
	case 126:
		n, maskAt = uint64(binary.BigEndian.Uint16(r.hdr[2:4])), 4
	case 127:
		n, maskAt = binary.BigEndian.Uint64(r.hdr[2:10]), 10
		if n>>63 != 0 {
			return used, protoErr(CloseProtocolError, "frame length has its most significant bit set")
		}
	default:
		n, maskAt = uint64(l), 2
	}
	copy(r.mask[:], r.hdr[maskAt:maskAt+4])
	switch op {
	case OpClose, OpPing, OpPong:
		if !fin {
			return used, protoErr(CloseProtocolError, "fragmented control frame")
		}
		if n > maxControlPayload {
			return used, protoErr(CloseProtocolError, "control frame payload longer than 125 bytes")
		}
	case OpText, OpBinary:
		if r.msgOp != 0 {
			return used, protoErr(CloseProtocolError, "new message before the fragmented one ended")
		}
	case OpContinuation:
		if r.msgOp == 0 {
			return used, protoErr(CloseProtocolError, "continuation frame without a message to continue")
		}
	default:
		return used, protoErr(CloseProtocolError, fmt.Sprintf("unknown opcode %d", op))
	}
	if !op.IsControl() && r.MaxMessage > 0 && n > uint64(r.MaxMessage-len(r.msg)) {
		return used, protoErr(CloseMessageTooBig, "message larger than the limit")
	}
	r.op, r.fin, r.flen, r.mpos, r.inBody = op, fin, int(n), 0, true
	if op == OpText || op == OpBinary {
		if !fin {
			r.msgOp = op
		}
	}
	return used, nil
}

// frameDone ends the current frame; whole is its payload when it arrived
// in one piece (nil when it was gathered into r.msg or r.ctl).
func (r *Reader) frameDone(whole []byte, fn func(Opcode, []byte) error) error {
	r.inBody = false
	op := r.op
	if op.IsControl() {
		payload := whole
		if payload == nil {
			payload = r.ctl
		}
		err := fn(op, payload)
		r.ctl = r.ctl[:0]
		return err
	}
	if !r.fin {
		return nil
	}
	if r.msgOp != 0 {
		op = r.msgOp
	}
	payload := whole
	if payload == nil {
		payload = r.msg
		if payload == nil {
			payload = []byte{}
		}
	}
	err := fn(op, payload)
	r.msgOp, r.msg = 0, nil
	return err
}

// Pending reports whether a frame is partly received.
func (r *Reader) Pending() bool { return r.hn > 0 || r.inBody || r.msgOp != 0 }

// unmask XORs b with the masking key, b starting at offset pos of the
// frame's payload.
func unmask(key [4]byte, pos int, b []byte) {
	if len(b) == 0 {
		return
	}
	// Rotate the key so that b[0] uses key[0].
	var k [4]byte
	for i := range 4 {
		k[i] = key[(pos+i)&3]
	}
	i := 0
	if len(b) >= 8 {
		k32 := binary.LittleEndian.Uint32(k[:])
		k64 := uint64(k32) | uint64(k32)<<32
		for ; i+8 <= len(b); i += 8 {
			v := binary.LittleEndian.Uint64(b[i:])
			binary.LittleEndian.PutUint64(b[i:], v^k64)
		}
	}
	for ; i < len(b); i++ {
		b[i] ^= k[i&3]
	}
}

// ParseClose reads a close frame's payload: its code (1005 when it has
// none) and reason. A payload of one byte, a code that may not be sent or
// a reason that is not UTF-8 is a protocol error.
func ParseClose(p []byte) (code int, reason string, err error) {
	switch {
	case len(p) == 0:
		return CloseNoStatus, "", nil
	case len(p) == 1:
		return 0, "", protoErr(CloseProtocolError, "close frame with a one-byte payload")
	}
	code = int(binary.BigEndian.Uint16(p))
	if !validCloseCode(code) {
		return 0, "", protoErr(CloseProtocolError, fmt.Sprintf("invalid close code %d", code))
	}
	if !utf8.Valid(p[2:]) {
		return 0, "", protoErr(CloseInvalidPayload, "close reason is not UTF-8")
	}
	return code, string(p[2:]), nil
}

// validCloseCode reports whether a peer may send code (RFC 6455 §7.4).
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1011, code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// AppendHeader appends the header of a final, unmasked (server) frame of
// n payload bytes.
func AppendHeader(dst []byte, op Opcode, n int) []byte {
	b0 := 0x80 | byte(op)
	switch {
	case n <= 125:
		return append(dst, b0, byte(n))
	case n <= 0xffff:
		return append(dst, b0, 126, byte(n>>8), byte(n))
	}
	dst = append(dst, b0, 127)
	return binary.BigEndian.AppendUint64(dst, uint64(n))
}

// AppendFrame appends a final, unmasked frame carrying payload.
func AppendFrame(dst []byte, op Opcode, payload []byte) []byte {
	return append(AppendHeader(dst, op, len(payload)), payload...)
}

// AppendClose appends a close frame with code and reason (cut to the 123
// bytes a close frame has room for, at a UTF-8 boundary). A code of 0 or
// 1005 sends a close frame without a code.
func AppendClose(dst []byte, code int, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return AppendHeader(dst, OpClose, 0)
	}
	if len(reason) > maxCloseReasonLength {
		cut := maxCloseReasonLength
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	dst = AppendHeader(dst, OpClose, 2+len(reason))
	dst = append(dst, byte(code>>8), byte(code))
	return append(dst, reason...)
}

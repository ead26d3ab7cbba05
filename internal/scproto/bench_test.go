package scproto_test

import (
	"testing"

	"github.com/sockmq/sockmq/internal/scproto"
)

func BenchmarkDecodePublish(b *testing.B) {
	in := []byte(`{"event":"#publish","data":{"channel":"sensors/room1/temp","data":{"v":21.5,"unit":"C"}},"cid":42}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		f := scproto.Decode(in)
		if len(f.Packets) != 1 {
			b.Fatal("decode")
		}
	}
}

func BenchmarkDecodeBatch(b *testing.B) {
	in := []byte(`[{"event":"#publish","data":{"channel":"a","data":1}},{"event":"#publish","data":{"channel":"a","data":2}},{"event":"#subscribe","data":{"channel":"c"},"cid":2}]`)
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		scproto.Decode(in)
	}
}

func BenchmarkDecodePong(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		scproto.Decode(nil)
	}
}

func BenchmarkAppendPublish(b *testing.B) {
	data := []byte(`{"v":21.5,"unit":"C"}`)
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = scproto.AppendPublish(buf[:0], "sensors/+/temp", "sensors/room1/temp", data)
	}
}

func BenchmarkAppendErrorResponse(b *testing.B) {
	e := &scproto.Error{Name: "ForbiddenError", Message: "you may not subscribe to secret/#"}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = scproto.AppendErrorResponse(buf[:0], 12, e)
	}
}

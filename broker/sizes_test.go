package broker

import (
	"testing"
	"unsafe"
)

func unsafeStringData(s string) *byte { return unsafe.StringData(s) }

// TestStoredSizes pins the layouts that make a stored message cheap: a
// retained or queued message is one 80-byte msg (plus its topic+payload
// allocation), a queued copy a 32-byte entry, a retained level a 16-byte
// slot.
func TestStoredSizes(t *testing.T) {
	if n := unsafe.Sizeof(msg{}); n > 80 {
		t.Errorf("msg is %d bytes, want <= 80", n)
	}
	if n := unsafe.Sizeof(outEntry{}); n > 32 {
		t.Errorf("outEntry is %d bytes, want <= 32", n)
	}
	if n := unsafe.Sizeof(rslot{}); n > 16 {
		t.Errorf("rslot is %d bytes, want <= 16", n)
	}
}

func TestMsgBodyOneAllocation(t *testing.T) {
	m := newBody("a/b", []byte("payload"))
	if m.topic != "a/b" || string(m.payload()) != "payload" || cap(m.payload()) != len("payload") {
		t.Fatalf("topic %q payload %q cap %d", m.topic, m.payload(), cap(m.payload()))
	}
	if &m.payload()[0] != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(m.topic)), 3)) {
		t.Fatal("payload does not follow the topic in the same allocation")
	}
	if e := newBody("t", nil); e.payload() != nil || e.topic != "t" {
		t.Fatalf("empty payload: %q %q", e.topic, e.payload())
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = newBody("a/b", []byte("payload")) }); allocs > 2 {
		t.Fatalf("newBody allocates %.0f times, want <= 2 (struct + body)", allocs)
	}
}

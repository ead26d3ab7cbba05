package broker

import "testing"

func TestMemTrimmerDecides(t *testing.T) {
	var tr memTrimmer
	total := uint64(0)
	step := func(alloc uint64) bool {
		total += alloc
		return tr.due(total)
	}
	// Busy, but less than trimAfter in all: never.
	for range 10 {
		if step(trimAfter / 20) {
			t.Fatal("trimmed before trimAfter bytes were allocated")
		}
	}
	// A burst past trimAfter: no trim while it goes on.
	if step(trimAfter) {
		t.Fatal("trimmed during a busy second")
	}
	// One quiet second is not enough; the second one is.
	if step(trimQuietRate / 4) {
		t.Fatal("trimmed after one quiet second")
	}
	if !step(0) {
		t.Fatal("no trim after two quiet seconds following a burst")
	}
	tr.done(total)
	// Quiet with nothing new allocated: no more trims.
	for range 10 {
		if step(1024) {
			t.Fatal("trimmed again without a new burst")
		}
	}
	// Activity between quiet seconds restarts the count.
	step(trimAfter)
	step(0)
	if step(trimQuietRate) {
		t.Fatal("a busy second must reset the quiet count")
	}
	step(0)
	if !step(0) {
		t.Fatal("no trim after two quiet seconds")
	}
}

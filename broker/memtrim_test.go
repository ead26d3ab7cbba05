package broker

import "testing"

func TestMemTrimmerDecides(t *testing.T) {
	var tr memTrimmer
	total := uint64(0)
	live := uint64(8 << 20)
	step := func(alloc uint64) bool {
		total += alloc
		return tr.due(total, live)
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
	tr.done(total)

	// A large live heap raises the bar to a quarter of it.
	live = 1 << 30
	step(trimAfter * 2)
	step(0)
	if step(0) {
		t.Fatal("trimmed a 1 GiB heap after 32 MiB allocated")
	}
	step(live / 4)
	step(0)
	if !step(0) {
		t.Fatal("no trim after a quarter of the live heap was allocated")
	}
}

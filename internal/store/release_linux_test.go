package store

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mappedRSS returns the resident bytes of this process's mappings of the
// store file, from /proc/self/smaps.
func mappedRSS(t *testing.T, s *Store) int64 {
	t.Helper()
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	ino := fi.Sys().(*syscall.Stat_t).Ino
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	in := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") && !strings.HasSuffix(fields[0], ":") {
			n, _ := strconv.ParseUint(fields[4], 10, 64)
			in = n == ino
			continue
		}
		if in && len(fields) >= 2 && fields[0] == "Rss:" {
			kb, _ := strconv.ParseInt(fields[1], 10, 64)
			total += kb * 1024
		}
	}
	return total
}

func TestReleaseMemoryDropsMappedPages(t *testing.T) {
	s := open(t, t.TempDir())
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	payload := bytes.Repeat([]byte("x"), 1000)
	for batch := range 8 {
		s.Write(func(w *Writer) {
			for i := range 1000 {
				id := w.Ref(&BodyRef{}, func() *Message { return &Message{Topic: "t", Payload: payload} })
				w.PutRetained(fmt.Sprintf("r/%d/%d", batch, i), id)
			}
		})
	}
	s.Sync()
	s.Close()

	s = open(t, s.opts.Dir)
	snap, err := s.Load() // reads every page through the map
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Retained) != 8000 {
		t.Fatalf("loaded %d retained, want 8000", len(snap.Retained))
	}
	before := mappedRSS(t, s)
	if before < 4<<20 {
		t.Fatalf("only %d bytes of the store map resident after reading 8 MB: cannot test the release", before)
	}
	released, err := s.ReleaseMemory()
	if err != nil {
		t.Fatal(err)
	}
	after := mappedRSS(t, s)
	t.Logf("store map resident: %d -> %d bytes (released a %d-byte mapping)", before, after, released)
	if after > before/10 {
		t.Fatalf("store map still %d bytes resident after ReleaseMemory (was %d)", after, before)
	}
	// The data is still there: the pages come back from the file.
	s.Close()
	s = open(t, s.opts.Dir)
	if snap, err = s.Load(); err != nil || len(snap.Retained) != 8000 || len(snap.Bodies) != 8000 {
		t.Fatalf("after release: %v, %d retained %d bodies", err, len(snap.Retained), len(snap.Bodies))
	}
}

package cluster

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Concurrent readers share fetches, and each gets a fetch that started
// after its call.
func TestSeqReaderCoalesces(t *testing.T) {
	var fetches, value atomic.Uint64
	r := &seqReader{fetch: func() (uint64, error) {
		v := value.Load()
		fetches.Add(1)
		time.Sleep(5 * time.Millisecond)
		return v, nil
	}}
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			value.Store(uint64(i) + 1000) // a write before the read
			want := uint64(1000)
			got, err := r.read()
			if err != nil || got < want {
				t.Errorf("read %d, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if n := fetches.Load(); n >= 100 {
		t.Errorf("%d fetches for 200 concurrent reads: not coalesced", n)
	}
	value.Store(7)
	if got, _ := r.read(); got != 7 {
		t.Errorf("a read after the others returned %d, want the value stored before it (7)", got)
	}
}

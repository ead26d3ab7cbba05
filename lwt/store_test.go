package lwt_test

import (
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/sockmq/sockmq/lwt"
)

// memStore is a will store shared with an imaginary reaper: taking a record
// out of it (reaped) makes the registry's claim fail.
type memStore struct {
	mu   sync.Mutex
	recs map[string]lwt.Will
	fail bool
}

func key(o lwt.Owner, ch string) string { return o.SessionID + "|" + ch }

func (s *memStore) Put(o lwt.Owner, ch string, w lwt.Will) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return errors.New("store down")
	}
	s.recs[key(o, ch)] = w
	return nil
}

func (s *memStore) Delete(o lwt.Owner, ch string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.recs, key(o, ch))
}

func (s *memStore) Claim(o lwt.Owner, ch string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.recs[key(o, ch)]
	delete(s.recs, key(o, ch))
	return ok
}

func (s *memStore) has(o lwt.Owner, ch string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.recs[key(o, ch)]
	return ok
}

// With a store, every will is recorded there while it may be sent, removed
// when cleared or discarded by a clean close, and not sent by this process
// when someone else took it out (a reaper sent it). A store that cannot
// record the will fails setWill, leaving nothing behind.
func TestRegistryKeepsWillsInStore(t *testing.T) {
	b, r, _, watcher := setup(t)
	st := &memStore{recs: map[string]lwt.Will{}}
	r.SetStore(st)
	data := json.RawMessage(`"gone"`)
	o := lwt.Owner{SessionID: "s1", Username: "alice"}
	for _, ch := range []string{"wills/a", "wills/b", "wills/c"} {
		if err := r.Set(o, lwt.Request{Channel: ch, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	if !st.has(o, "wills/a") || !st.has(o, "wills/b") || !st.has(o, "wills/c") {
		t.Fatalf("store holds %v, want the three wills", st.recs)
	}
	r.Clear(o, "wills/b")
	if st.has(o, "wills/b") {
		t.Fatal("cleared will still in the store")
	}
	st.Claim(o, "wills/c") // a reaper sent it
	r.Ended("s1", false)
	if st.has(o, "wills/a") {
		t.Fatal("sent will still in the store")
	}
	if m := watcher.Next(t); m.Topic != "wills/a" {
		t.Fatalf("got %s, want wills/a", m.Topic)
	}
	sentinel(t, b, watcher) // wills/c, reaped, is not sent again

	clean := lwt.Owner{SessionID: "s2"}
	if err := r.Set(clean, lwt.Request{Channel: "wills/d", Data: data}); err != nil {
		t.Fatal(err)
	}
	r.Ended("s2", true)
	if st.has(clean, "wills/d") {
		t.Fatal("will of a cleanly closed socket still in the store")
	}

	st.mu.Lock()
	st.fail = true
	st.mu.Unlock()
	down := lwt.Owner{SessionID: "s3"}
	var e *lwt.Error
	if err := r.Set(down, lwt.Request{Channel: "wills/e", Data: data}); !errors.As(err, &e) || e.Name != "BrokerError" {
		t.Fatalf("setWill with the store down: %v, want BrokerError", err)
	}
	if n := r.HeldBytes(); n != 0 {
		t.Fatalf("%d bytes held after the refused will", n)
	}
	r.Ended("s3", false)
	sentinel(t, b, watcher)
}

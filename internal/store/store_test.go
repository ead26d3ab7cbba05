package store

import (
	"sync/atomic"
	"testing"
	"time"
)

func open(t *testing.T, dir string) *Store {
	t.Helper()
	s, err := Open(Options{Dir: dir, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

type flag struct{ n atomic.Int32 }

func (f *flag) Committed() { f.n.Add(1) }

func TestWriteWaitLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	shared := &BodyRef{}
	body := &Message{Topic: "a/b", Payload: []byte("hello"), QoS: 1, Created: 1700000000000, Origin: "pub",
		ContentType: "text/plain", HasPayloadFormat: true, PayloadFormat: 1, User: []UserProperty{{"k", "v"}}}
	var waited flag
	seq := s.Write(func(w *Writer) {
		for _, c := range []string{"c1", "c2"} {
			w.PutSession(&Session{ClientID: c, Owner: "alice", ProtocolVersion: 5, Expiry: 60,
				Will: &Will{Delay: 5, Message: Message{Topic: "w/" + c, Payload: []byte("gone")}}})
			w.PutSubscription(c, &Subscription{Filter: "a/#", QoS: 2, NoLocal: true, ID: 7})
			id := w.Ref(shared, func() *Message { return body })
			w.PutOut(c, &OutEntry{Seq: 1, PacketID: 10, QoS: 1, MsgID: id, SubIDs: []uint32{7}})
		}
		w.PutInbound2("c1", 33)
		rid := w.Ref(&BodyRef{}, func() *Message { return &Message{Topic: "r", Payload: []byte("ret"), Retain: true} })
		w.PutRetained("r", rid)
	})
	if !s.Wait(seq, &waited) {
		t.Fatal("Wait reported the batch committed before the writer could have run")
	}
	deadline := time.Now().Add(5 * time.Second)
	for waited.n.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("waiter never released")
		}
		time.Sleep(time.Millisecond)
	}
	if s.Committed() < seq {
		t.Fatalf("committed %d < %d after the waiter ran", s.Committed(), seq)
	}
	if s.Wait(seq, &waited) {
		t.Fatal("Wait on a committed batch must return false")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := open(t, dir)
	snap, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sessions) != 2 || len(snap.Retained) != 1 {
		t.Fatalf("loaded %d sessions, %d retained", len(snap.Sessions), len(snap.Retained))
	}
	st := snap.Sessions[0]
	if st.Session.ClientID != "c1" || st.Session.Owner != "alice" || st.Session.Will == nil || st.Session.Will.Topic != "w/c1" ||
		len(st.Subs) != 1 || st.Subs[0].ID != 7 || !st.Subs[0].NoLocal || len(st.Out) != 1 || len(st.Inbound2) != 1 || st.Inbound2[0] != 33 {
		t.Fatalf("session c1 loaded wrong: %+v", st)
	}
	id := st.Out[0].MsgID
	if snap.Sessions[1].Out[0].MsgID != id {
		t.Fatal("the two queues must share one body")
	}
	if snap.Refs[id] != 2 {
		t.Fatalf("body refs = %d, want 2", snap.Refs[id])
	}
	got := snap.Bodies[id]
	if got.Topic != "a/b" || string(got.Payload) != "hello" || got.ContentType != "text/plain" || got.User[0].Value != "v" || got.Created != body.Created {
		t.Fatalf("body loaded wrong: %+v", got)
	}
}

func TestUnrefDeletesBodyAndDeleteSessionRemovesEverything(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ref := &BodyRef{}
	msg := func() *Message { return &Message{Topic: "t", Payload: []byte("x")} }
	s.Write(func(w *Writer) {
		w.PutSession(&Session{ClientID: "a", Expiry: NeverExpires})
		w.PutSession(&Session{ClientID: "ab", Expiry: NeverExpires}) // shares the prefix "a" without the separator
		id := w.Ref(ref, msg)
		w.PutOut("a", &OutEntry{Seq: 1, PacketID: 1, QoS: 1, MsgID: id})
		w.Ref(ref, msg)
		w.PutOut("ab", &OutEntry{Seq: 1, PacketID: 1, QoS: 1, MsgID: id})
		w.PutSubscription("a", &Subscription{Filter: "x"})
		w.PutSubscription("ab", &Subscription{Filter: "x"})
	})
	s.Write(func(w *Writer) {
		w.DeleteSession("a")
		w.Unref(ref)
	})
	s.Sync()
	_ = s.Close()
	s2 := open(t, dir)
	snap, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Sessions) != 1 || snap.Sessions[0].Session.ClientID != "ab" || len(snap.Sessions[0].Out) != 1 || len(snap.Sessions[0].Subs) != 1 {
		t.Fatalf("after deleting session a: %+v", snap.Sessions)
	}
	if len(snap.Bodies) != 1 {
		t.Fatalf("body still referenced by ab must stay: %d bodies", len(snap.Bodies))
	}
	s2.Write(func(w *Writer) {
		r := RestoredRef(snap.Sessions[0].Out[0].MsgID, snap.Refs[snap.Sessions[0].Out[0].MsgID])
		w.DeleteOut("ab", 1)
		w.Unref(&r)
	})
	s2.Sync()
	_ = s2.Close()
	s3 := open(t, dir)
	snap, err = s3.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Bodies) != 0 {
		t.Fatalf("the last Unref must delete the body: %d left", len(snap.Bodies))
	}
}

// A queued entry (and its body) deleted in the batch that created it is
// never written: the message was acknowledged before its copy reached the
// disk, so the disk has nothing to do.
func TestCreateThenDeleteInOneBatchWritesNothing(t *testing.T) {
	var writes atomic.Int64
	s, err := Open(Options{Dir: t.TempDir(), Sync: true, OnCommit: func(n int, _ time.Duration) { writes.Add(int64(n)) }})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Load(); err != nil {
		t.Fatal(err)
	}
	ref := &BodyRef{}
	msg := func() *Message { return &Message{Topic: "t", Payload: []byte("x")} }
	seq := s.Write(func(w *Writer) {
		id := w.Ref(ref, msg)
		w.CreateOut("c", &OutEntry{Seq: 1, PacketID: 1, QoS: 1, MsgID: id})
		w.PutOut("c", &OutEntry{Seq: 1, PacketID: 1, QoS: 1, State: OutSent, MsgID: id})
		w.DeleteOut("c", 1)
		w.Unref(ref)
		// An entry updated (not created) in the batch keeps its delete.
		w.PutOut("c", &OutEntry{Seq: 2, PacketID: 2, QoS: 1, MsgID: 9})
		w.DeleteOut("c", 2)
	})
	done := make(chan struct{})
	if s.Wait(seq, WaiterFunc(func() { close(done) })) {
		s.nudge()
		<-done
	}
	if got := writes.Load(); got != 1 {
		t.Fatalf("committed %d writes, want 1 (the delete of the entry that existed before)", got)
	}
}

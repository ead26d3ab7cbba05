package store

import (
	bolt "go.etcd.io/bbolt"
	"os"
	"path/filepath"
	"testing"
)

// testdata/schema1.db was written by sockmq before its own engine (mochi's
// JSON storage records, schema 1): two persistent sessions that were
// offline with queued messages (dev5: MQTT 5, QoS 1 and 2 subscriptions, a
// delayed will; dev3: MQTT 3.1.1), and a retained message. dev5's session
// expiry (4e9 s) and will delay (3e9 s) are long enough that the fixture
// never expires, whenever the tests run.
func copyFixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/schema1.db")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestMigrateSchema1(t *testing.T) {
	dir := copyFixture(t)
	s := open(t, dir)
	snap, err := s.Load()
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]SessionState{}
	for _, st := range snap.Sessions {
		byID[st.Session.ClientID] = st
	}
	d5, d3 := byID["dev5"], byID["dev3"]
	if len(byID) != 2 || d5.Session.ProtocolVersion != 5 || d3.Session.ProtocolVersion != 4 {
		t.Fatalf("sessions: %+v", snap.Sessions)
	}
	if d5.Session.Expiry != 4000000000 || d3.Session.Expiry != NeverExpires {
		t.Fatalf("expiry dev5 %d dev3 %d", d5.Session.Expiry, d3.Session.Expiry)
	}
	if w := d5.Session.Will; w == nil || w.Topic != "status/dev5" || string(w.Payload) != "gone" || w.Delay != 3000000000 || !w.Retain || w.QoS != 1 {
		t.Fatalf("dev5 will: %+v", d5.Session.Will)
	}
	if d5.Session.DisconnectedAt == 0 {
		t.Fatal("dev5 disconnected_at lost")
	}
	if len(d5.Subs) != 2 || len(d3.Subs) != 1 {
		t.Fatalf("subscriptions dev5 %+v dev3 %+v", d5.Subs, d3.Subs)
	}
	payloads := func(st SessionState) (out []string) {
		for _, o := range st.Out {
			out = append(out, string(snap.Bodies[o.MsgID].Payload))
		}
		return out
	}
	if got := payloads(d5); len(got) != 4 || got[0] != "one" || got[1] != "two" || got[2] != "three" || got[3] != "exactly-once" {
		t.Fatalf("dev5 queue in order: %q", got)
	}
	if got := payloads(d3); len(got) != 3 || got[2] != "three" {
		t.Fatalf("dev3 queue: %q", got)
	}
	for _, o := range d5.Out {
		if o.State != OutQueued || o.PacketID == 0 {
			t.Fatalf("migrated entry must be unsent with its packet id: %+v", o)
		}
	}
	if d5.Out[3].QoS != 2 {
		t.Fatalf("QoS of the last message: %d", d5.Out[3].QoS)
	}
	if len(snap.Retained) != 1 || snap.Retained[0].Topic != "retained/x" || string(snap.Bodies[snap.Retained[0].BodyID].Payload) != "kept" {
		t.Fatalf("retained: %+v", snap.Retained)
	}
	_ = s.Close()

	// The migration happened once: the file is schema 2 now, and loads the same.
	s2 := open(t, dir)
	snap2, err := s2.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap2.Sessions) != 2 || len(snap2.Retained) != 1 || len(snap2.Bodies) != len(snap.Bodies) {
		t.Fatalf("second open: %d sessions %d retained %d bodies", len(snap2.Sessions), len(snap2.Retained), len(snap2.Bodies))
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	_ = s.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bMeta).Put(schemaKey, []byte("99")) })
	_ = s.Close()
	if _, err := Open(Options{Dir: dir}); err == nil {
		t.Fatal("a store written by a newer schema must be refused")
	}
}

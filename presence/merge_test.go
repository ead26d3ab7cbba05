package presence_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sockmq/sockmq/presence"
)

type nopPub struct{}

func (nopPub) PublishPresence(string, []byte, bool) error { return nil }

// Merge orders local and remote sessions by connect time, keeps the local
// document of an id both list, and leaves the local snapshot unchanged.
func TestMergeOrdersAndPrefersLocal(t *testing.T) {
	tr := presence.New(nopPub{}, nil)
	defer tr.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.Connected(presence.Session{ID: "l1", Protocol: "mqtt", ConnectedAt: t0.Add(time.Second)}, false)
	tr.Connected(presence.Session{ID: "both", Protocol: "mqtt", ConnectedAt: t0.Add(3 * time.Second)}, false)
	tr.Flush()
	local := tr.Snapshot()
	doc := func(id string, at time.Duration, node string) presence.Doc {
		s := presence.Session{ID: id, Protocol: "mqtt", ConnectedAt: t0.Add(at), Node: node}
		b, _ := json.Marshal(s)
		return presence.Doc{Session: s, JSON: b}
	}
	m := presence.Merge(local, []presence.Doc{doc("r2", 2*time.Second, "x"), doc("r0", 0, "x"), doc("both", 4*time.Second, "x")})
	var got []presence.Session
	if err := json.Unmarshal(m.JSON(), &got); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for i, s := range got {
		ids = append(ids, s.ID)
		if m.Topics[i] != presence.ClientTopic(s.ID) {
			t.Errorf("topic %d = %s, want %s", i, m.Topics[i], presence.ClientTopic(s.ID))
		}
	}
	if want := `["r0","l1","r2","both"]`; mustJSON(ids) != want {
		t.Fatalf("merged ids %s, want %s", mustJSON(ids), want)
	}
	if got[3].Node != "" {
		t.Errorf("both: remote document listed instead of the local one")
	}
	if len(local.Sessions) != 2 {
		t.Errorf("local snapshot modified: %d sessions", len(local.Sessions))
	}
}

func mustJSON(v any) string { b, _ := json.Marshal(v); return string(b) }

package presence_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/sockmq/sockmq/presence"
)

// discard is a Publisher that publishes nothing.
type discard struct{}

func (discard) PublishPresence(string, []byte, bool) error { return nil }

func TestSnapshotIsSharedUntilAChange(t *testing.T) {
	tr := presence.New(discard{}, nil)
	defer tr.Close()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tr.Connected(presence.Session{ID: "b", Protocol: presence.ProtocolMQTT, ConnectedAt: t0.Add(time.Second), Conn: "1"}, false)
	tr.Connected(presence.Session{ID: "a/+", Protocol: presence.ProtocolMQTT, ConnectedAt: t0, Conn: "2"}, false)
	tr.Flush()

	sn := tr.Snapshot()
	if len(sn.Sessions) != 2 || sn.Sessions[0].ID != "a/+" || sn.Topics[0] != presence.ClientTopic("a/+") {
		t.Fatalf("snapshot %+v %v, want a/+ (earlier) then b", sn.Sessions, sn.Topics)
	}
	want, _ := json.Marshal(tr.List())
	if string(sn.JSON()) != string(want) {
		t.Fatalf("JSON %s, want %s", sn.JSON(), want)
	}
	if got := sn.AppendJSON(nil, func(i int) bool { return sn.Sessions[i].ID == "b" }); !json.Valid(got) || len(got) >= len(want) {
		t.Fatalf("filtered JSON %s", got)
	}
	if string(sn.AppendJSON(nil, func(int) bool { return false })) != "[]" {
		t.Fatal("empty selection is not []")
	}
	if tr.Snapshot() != sn {
		t.Fatal("a second snapshot without a change was rebuilt")
	}
	tr.Disconnected("b", "1", "clean")
	tr.Flush()
	if sn2 := tr.Snapshot(); sn2 == sn || len(sn2.Sessions) != 1 || len(sn.Sessions) != 2 {
		t.Fatal("a change must give a new snapshot and leave the old one as it was")
	}
}

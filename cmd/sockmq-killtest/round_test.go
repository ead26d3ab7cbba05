package main

import (
	"syscall"
	"testing"
)

func TestCompareCountsLossDuplicatesAndExtras(t *testing.T) {
	acked := map[msgID]bool{{0, 0}: true, {0, 1}: true, {0, 2}: true, {1, 0}: true, {markerPub, 0}: true}
	delivered := map[msgID]int{{0, 0}: 1, {0, 2}: 3, {1, 0}: 1, {markerPub, 0}: 1, {1, 1}: 2}
	received, lost, dups, extra := compare(acked, delivered)
	if received != 4 || lost != 1 || dups != 3 || extra != 1 {
		t.Fatalf("received %d lost %d dups %d extra %d, want 4 1 3 1", received, lost, dups, extra)
	}
}

func TestLostRangesNameRuns(t *testing.T) {
	acked := map[msgID]bool{}
	for seq := 0; seq < 10; seq++ {
		acked[msgID{0, seq}] = true
		acked[msgID{1, seq}] = true
	}
	acked[msgID{markerPub, 0}] = true
	delivered := map[msgID]int{}
	for seq := 0; seq < 10; seq++ {
		if seq < 3 || seq > 6 {
			delivered[msgID{0, seq}] = 1
		}
		if seq%2 == 0 {
			delivered[msgID{1, seq}] = 1
		}
	}
	if got, want := lostRanges(acked, delivered, 3), "marker:0-0 p0:3-6 p1:1-1 +4 more runs"; got != want {
		t.Fatalf("lostRanges = %q, want %q", got, want)
	}
}

func TestPayloadRoundTrip(t *testing.T) {
	for _, id := range []msgID{{0, 0}, {3, 1499}, {markerPub, 0}} {
		got, ok := parsePayload("q1-v5-online-kill-1", payloadFor("q1-v5-online-kill-1", id))
		if !ok || got != id {
			t.Fatalf("round trip of %+v = %+v %v", id, got, ok)
		}
	}
	for _, bad := range []string{"", "kt other 0 1", "kt r 0", "kt r x 1", "kt r 0 -1", "kt r -2 0", "xx r 0 1"} {
		if _, ok := parsePayload("r", []byte(bad)); ok {
			t.Errorf("parsePayload(%q) accepted", bad)
		}
	}
}

func TestKillPointLeavesAckedAndInflightMessages(t *testing.T) {
	p := params{pubs: 2, msgs: 1500, window: 16}
	seen := map[int]bool{}
	for i := uint64(0); i < 2000; i++ {
		k := killPoint(i, p)
		if k < p.window || k > p.pubs*p.msgs-2*p.pubs*p.window {
			t.Fatalf("seed %d: kill point %d outside [%d, %d]", i, k, p.window, p.pubs*p.msgs-2*p.pubs*p.window)
		}
		seen[k/300] = true
	}
	if len(seen) < 9 {
		t.Fatalf("kill points cover only %d of 10 deciles", len(seen))
	}
	if killPoint(7, p) != killPoint(7, p) {
		t.Fatal("kill point not reproducible from its seed")
	}
}

func TestRoundSeedsReplay(t *testing.T) {
	a, b := roundSeed(42, "q1-v311-offline-kill-1"), roundSeed(42, "q1-v311-offline-kill-2")
	if a == b {
		t.Fatal("two rounds of a run share a seed")
	}
	if a != roundSeed(42, "q1-v311-offline-kill-1") {
		t.Fatal("a round's seed depends on more than the run seed and its name")
	}
	if a == roundSeed(43, "q1-v311-offline-kill-1") {
		t.Fatal("a round's seed ignores the run seed")
	}
}

func TestShortPlanCoversTheIssue(t *testing.T) {
	specs := plan(forms["short"])
	kills := map[kind]int{}
	var suback, term, nosync, norestart int
	subackQoS, subackVersion, subackMode := map[byte]bool{}, map[byte]bool{}, map[bool]bool{}
	names := map[string]bool{}
	for _, s := range specs {
		if names[s.Name] {
			t.Fatalf("round name %s twice", s.Name)
		}
		names[s.Name] = true
		k := kind{s.QoS, s.Version, s.Online}
		switch {
		case s.AfterSuback:
			suback++
			subackQoS[s.QoS], subackVersion[s.Version], subackMode[s.Online] = true, true, true
		case s.Stop == syscall.SIGTERM:
			term++
		case s.Stop == 0:
			norestart++
		case !s.Sync:
			nosync++
		default:
			kills[k]++
		}
	}
	for _, k := range kinds() {
		if kills[k] < 2 {
			t.Errorf("%s: %d SIGKILL rounds, want at least 2", k, kills[k])
		}
	}
	if suback == 0 || len(subackQoS) != 2 || len(subackVersion) != 2 || len(subackMode) != 2 {
		t.Errorf("SUBACK rounds %d do not cover both QoS levels, versions and modes", suback)
	}
	if term == 0 || nosync == 0 || norestart == 0 {
		t.Errorf("graceful controls %d, sync=false rounds %d, no-restart controls %d: want each", term, nosync, norestart)
	}
	if long := plan(forms["long"]); len(long) <= 3*len(specs) {
		t.Errorf("long form has %d rounds, short %d", len(long), len(specs))
	}
}

package main

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"
)

// result is the outcome of one round.
type result struct {
	spec    roundSpec
	seed    uint64
	killAt  int // acknowledgement count at which the broker was stopped (0: after SUBACK or no stop)
	acked   int // messages acknowledged before the stop
	unacked int // messages sent but not acknowledged when the broker stopped
	after   int // messages acknowledged after the restart (including the marker)

	received int // acknowledged messages the subscriber received
	lost     int // acknowledged messages it never received
	dups     int // application deliveries beyond the first, over all messages
	extra    int // unacknowledged messages that were delivered anyway (allowed)
	retrans  int // QoS 2 retransmissions of unreleased packet ids (allowed, not delivered)
	idReuse  int // a different message under an unreleased QoS 2 packet id
	foreign  int // deliveries that are not this round's messages

	lostRanges  string // the first runs of lost messages, "publisher:first-last"
	subErr      error  // why the subscriber's last connection ended early, if it did
	exitNote    string // the stopped broker did not end the expected way
	sessionLost bool   // CONNACK said no session after the restart
	markerSeen  bool
	noMatch     int // MQTT 5 acks saying no subscriber matched
	refused     int // MQTT 5 acks with a failure reason code
	elapsed     time.Duration
	err         error // the harness could not run the round
}

// failed reports whether the round broke the durability promise.
func (r result) failed() bool {
	return r.lost > 0 || (r.spec.QoS == 2 && r.dups > 0) || r.idReuse > 0 || r.sessionLost || r.foreign > 0
}

// compare counts, for the acknowledged messages, how many were delivered
// and how many were lost; over all deliveries, the deliveries beyond a
// message's first (duplicates) and the delivered messages that were never
// acknowledged (extra: allowed, the broker may have stored them before it
// died).
func compare(acked map[msgID]bool, delivered map[msgID]int) (received, lost, dups, extra int) {
	for id := range acked {
		if delivered[id] > 0 {
			received++
		} else {
			lost++
		}
	}
	for id, n := range delivered {
		if n > 1 {
			dups += n - 1
		}
		if !acked[id] && n > 0 {
			extra++
		}
	}
	return received, lost, dups, extra
}

// lostRanges describes up to n runs of consecutive lost messages, in
// publisher and sequence order, as "p0:120-388 p1:97-97 ...".
func lostRanges(acked map[msgID]bool, delivered map[msgID]int, n int) string {
	var lost []msgID
	for id := range acked {
		if delivered[id] == 0 {
			lost = append(lost, id)
		}
	}
	slices.SortFunc(lost, func(a, b msgID) int {
		if a.pub != b.pub {
			return cmp.Compare(a.pub, b.pub)
		}
		return cmp.Compare(a.seq, b.seq)
	})
	var parts []string
	runs := 0
	for i := 0; i < len(lost); {
		j := i
		for j+1 < len(lost) && lost[j+1].pub == lost[i].pub && lost[j+1].seq == lost[j].seq+1 {
			j++
		}
		runs++
		if runs <= n {
			who := fmt.Sprintf("p%d", lost[i].pub)
			if lost[i].pub == markerPub {
				who = "marker"
			}
			parts = append(parts, fmt.Sprintf("%s:%d-%d", who, lost[i].seq, lost[j].seq))
		}
		i = j + 1
	}
	if runs > n {
		parts = append(parts, fmt.Sprintf("+%d more runs", runs-n))
	}
	return strings.Join(parts, " ")
}

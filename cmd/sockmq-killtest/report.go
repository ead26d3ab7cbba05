package main

import (
	"fmt"
	"io"
	"strings"
	"syscall"
	"time"
)

const tableHeader = "%-30s %-16s %6s %6s %7s %5s %6s %6s %5s %7s %5s %6s  %s\n"

func printHeader(w io.Writer) {
	fmt.Fprintf(w, tableHeader, "ROUND", "SEED", "KILL@", "ACKED", "UNACKED", "AFTER", "RECV", "LOST", "DUPS", "RETRANS", "EXTRA", "TIME", "RESULT")
}

// printResult writes one round's line; the package doc describes the
// columns.
func printResult(w io.Writer, r result) {
	killAt := "-"
	switch {
	case r.spec.AfterSuback:
		killAt = "suback"
	case r.spec.Stop != 0:
		killAt = fmt.Sprint(r.killAt)
	}
	verdict := "PASS"
	var notes []string
	switch {
	case r.err != nil:
		verdict = "ERROR"
		notes = append(notes, r.err.Error())
	case r.failed():
		verdict = "FAIL"
	}
	if r.err == nil {
		if r.lost > 0 {
			notes = append(notes, fmt.Sprintf("%d acknowledged messages lost: %s", r.lost, r.lostRanges))
		}
		if r.spec.QoS == 2 && r.dups > 0 {
			notes = append(notes, fmt.Sprintf("%d QoS 2 duplicates", r.dups))
		}
		if r.sessionLost {
			notes = append(notes, "session not present after restart")
		}
		if !r.markerSeen {
			notes = append(notes, "marker not delivered")
		}
		if r.exitNote != "" {
			notes = append(notes, r.exitNote)
		}
		if r.subErr != nil {
			notes = append(notes, fmt.Sprintf("subscriber connection ended: %v", r.subErr))
		}
		if r.idReuse > 0 {
			notes = append(notes, fmt.Sprintf("%d messages under a packet id not yet released", r.idReuse))
		}
		if r.foreign > 0 {
			notes = append(notes, fmt.Sprintf("%d deliveries that are not this round's messages", r.foreign))
		}
		if r.noMatch > 0 {
			notes = append(notes, fmt.Sprintf("%d acks said no subscriber matched", r.noMatch))
		}
		if r.refused > 0 {
			notes = append(notes, fmt.Sprintf("%d publishes refused", r.refused))
		}
		if r.spec.Stop != 0 && !r.spec.AfterSuback && r.unacked == 0 && r.spec.Stop == syscall.SIGKILL {
			notes = append(notes, "no message was in flight at the kill")
		}
	}
	if len(notes) > 0 {
		verdict += " (" + strings.Join(notes, "; ") + ")"
	}
	fmt.Fprintf(w, tableHeader, r.spec.Name, fmt.Sprintf("%016x", r.seed), killAt, fmt.Sprint(r.acked), fmt.Sprint(r.unacked),
		fmt.Sprint(r.after), fmt.Sprint(r.received), fmt.Sprint(r.lost), fmt.Sprint(r.dups), fmt.Sprint(r.retrans),
		fmt.Sprint(r.extra), r.elapsed.Round(100*time.Millisecond).String(), verdict)
}

// summary aggregates a run.
type summary struct {
	rounds, passed, failed, errors int
	lostRounds, lostTotal, lostMax int
	dupRounds, dupTotal, q2Rounds  int
	sessionLost                    int
	failedNames                    []string
}

func (s *summary) add(r result) {
	s.rounds++
	switch {
	case r.err != nil:
		s.errors++
		s.failedNames = append(s.failedNames, r.spec.Name)
		return
	case r.failed():
		s.failed++
		s.failedNames = append(s.failedNames, r.spec.Name)
	default:
		s.passed++
	}
	if r.lost > 0 {
		s.lostRounds++
		s.lostTotal += r.lost
		s.lostMax = max(s.lostMax, r.lost)
	}
	if r.spec.QoS == 2 {
		s.q2Rounds++
		if r.dups > 0 {
			s.dupRounds++
			s.dupTotal += r.dups
		}
	}
	if r.sessionLost {
		s.sessionLost++
	}
}

func (s *summary) print(w io.Writer, seed uint64, elapsed time.Duration) {
	fmt.Fprintf(w, "killtest: %d rounds in %v (seed %d): %d passed, %d failed, %d errors; "+
		"%d acknowledged messages lost in %d rounds (at most %d in one); "+
		"QoS 2 duplicates in %d of %d QoS 2 rounds (%d deliveries); sessions lost in %d rounds\n",
		s.rounds, elapsed.Round(time.Second), seed, s.passed, s.failed, s.errors,
		s.lostTotal, s.lostRounds, s.lostMax, s.dupRounds, s.q2Rounds, s.dupTotal, s.sessionLost)
	if len(s.failedNames) > 0 {
		fmt.Fprintf(w, "replay one round: sockmq-killtest --sockmq <bin> --seed %d --only '^NAME$' (failed: %s)\n",
			seed, strings.Join(s.failedNames, " "))
	}
}

// code is the exit status: 0 all passed, 1 a durability failure, 3 the
// harness could not run a round.
func (s *summary) code() int {
	switch {
	case s.failed > 0:
		return 1
	case s.errors > 0:
		return 3
	}
	return 0
}

// Command sockmq-killtest proves (or disproves) that sockmq loses no
// acknowledged message and delivers no QoS 2 message twice when its
// process is killed with SIGKILL and restarted on the same data directory.
//
// # Method
//
// The harness owns the broker: it runs the sockmq binary given by
// --sockmq (`sockmq serve`) in its own process group on fresh 127.0.0.1
// ports with a data directory per round, and kills it for real. A round:
//
//  1. starts the broker (persistence on, sync true unless the round says
//     otherwise) and connects a persistent subscriber (MQTT 3.1.1
//     clean_session=false, or MQTT 5 clean start false with a session
//     expiry of an hour) that subscribes at the round's QoS;
//  2. offline rounds: the subscriber disconnects and its messages queue
//     in its session; online rounds: it stays connected, receiving and
//     acknowledging;
//  3. publishers (clean sessions) send QoS 1 or 2 messages whose payload
//     names the round, the publisher and a sequence number, each with at
//     most --window packet ids in use. A message counts as acknowledged
//     when its PUBACK (QoS 1) or PUBREC (QoS 2: the broker's promise;
//     PUBREL/PUBCOMP only release the id) arrives. Publishers never
//     retransmit;
//  4. at a seeded random acknowledgement count (at least one window
//     acknowledged, every publisher still with messages in flight) the
//     broker gets SIGKILL (SIGTERM in the graceful controls); the
//     publishers' connections break and what they had acknowledged by
//     then is "acknowledged before the kill";
//  5. the broker restarts on the same data directory; the subscriber
//     reconnects (its CONNACK must say session present), a marker is
//     published and acknowledged, and the subscriber collects until it
//     has the marker and every acknowledged message, or has the marker
//     and nothing more arrived for --quiet, or the marker does not come
//     within --collect;
//  6. the round passes when every acknowledged message was delivered at
//     least once and, at QoS 2, none was delivered twice.
//
// A SUBACK round kills the broker right after the SUBACK of the persistent
// subscription (before anything is published) and publishes after the
// restart: the subscription must have survived. Graceful controls stop
// the broker with SIGTERM; sync=false rounds kill a broker that does not
// fsync (a process crash must not lose what the OS already has);
// no-restart controls stop nothing and check the harness itself.
//
// # Forms
//
// The short form (35 rounds, the Go test TestKillShortForm) kills each of
// the eight kinds (QoS 1/2 × MQTT 3.1.1/5 × offline/online) at three
// random points, and adds four SUBACK rounds, four graceful controls (the
// QoS 2 kinds), two sync=false rounds and a no-restart control. The long
// form (make soak, 128 rounds) kills each kind at ten points and runs two
// graceful controls, two sync=false rounds, a SUBACK round and a
// no-restart control for every kind. --kills changes the kill points per
// kind, --only selects rounds by name, --list prints the plan.
//
// # Report
//
// One line per round: its seed; KILL@, the acknowledgement count at which
// the broker was stopped; ACKED, messages acknowledged before the stop;
// UNACKED, messages written but unacknowledged when it came; AFTER,
// messages acknowledged after the restart (the marker, and every message
// of a SUBACK round); RECV and LOST, the acknowledged messages that were
// and were not delivered; DUPS, deliveries beyond a message's first
// (allowed at QoS 1 only); RETRANS, QoS 2 retransmissions the client
// absorbed; EXTRA, unacknowledged messages delivered anyway (allowed). A
// failing line names the lost runs ("p0:120-388": publisher 0, sequence
// numbers 120 to 388). The summary gives totals and the seed. Exit status
// 0: every round passed; 1: a loss, QoS 2 duplicate or lost session; 2:
// usage; 3: the harness could not run a round.
//
// # Clients
//
// Publishers and the subscriber are small raw MQTT clients written here
// (codec.go), not client libraries, so that the harness counts exactly
// what the broker sent and keeps the QoS 2 state itself. The subscriber is
// one object for the whole round, across the broker restart: it keeps the
// packet ids it answered with PUBREC and not yet saw released by PUBREL
// ([MQTT-4.3.3]); a PUBLISH for such an id is a retransmission that a
// conforming client acknowledges but does not deliver again. Every other
// PUBLISH is delivered to "the application" and counted. A QoS 2 message
// counted twice was therefore sent again by the broker after it released
// the packet id, or under a new id: a broker fault, never a client one.
//
// # Replay
//
// Each round's random draws come from a seed derived from the run's seed
// (--seed, printed in the summary) and the round's name, so
// `--seed S --only '^NAME$'` replays a round's kill point. The timing of
// the kill relative to the broker's internal work is not reproducible, so
// a replay may not reproduce a loss.
//
// Safety: loopback only; every round has a deadline (--round-timeout),
// the run has a watchdog (--timeout) that kills every broker it started,
// and brokers also die with the harness (process group, parent-death
// signal).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"syscall"
	"time"
)

// maxErrorsInARow ends a run whose rounds keep failing to run (a broker
// that does not start, say): more rounds would say nothing new.
const maxErrorsInARow = 3

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.Exit)
	stop()
	os.Exit(code)
}

// options are the parsed flags.
type options struct {
	form    string
	plan    planOptions
	only    *regexp.Regexp
	params  params
	timeout time.Duration
	list    bool
}

func parseArgs(args []string, stderr io.Writer) (options, int, bool) {
	fs := flag.NewFlagSet("sockmq-killtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	bin := fs.String("sockmq", "", "path of the sockmq binary to test (required)")
	form := fs.String("form", "short", "run size: short (make test) or long (make soak)")
	kills := fs.Int("kills", 0, "SIGKILL rounds per kind (QoS × version × subscriber mode); 0 = the form's")
	seed := fs.Uint64("seed", 0, "run seed; 0 = from the clock (printed in the summary)")
	only := fs.String("only", "", "run only the rounds whose name matches this regular expression")
	pubs := fs.Int("pubs", 2, "publishers per round")
	msgs := fs.Int("msgs", 1500, "messages per publisher")
	window := fs.Int("window", 16, "packet ids in use per publisher (in-flight window)")
	quiet := fs.Duration("quiet", 3*time.Second, "after the marker arrived with messages missing, stop once nothing arrived for this long")
	collect := fs.Duration("collect", 20*time.Second, "how long to wait for the marker after the restart")
	roundTimeout := fs.Duration("round-timeout", 2*time.Minute, "deadline of one round")
	timeout := fs.Duration("timeout", 0, "watchdog for the whole run; 0 = 10m (short) or 2h (long)")
	dir := fs.String("dir", "", "where the rounds' data directories go; empty = a new temporary directory")
	keep := fs.Bool("keep", false, "keep each round's directory (config, data, broker.log)")
	list := fs.Bool("list", false, "print the rounds of the plan and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sockmq-killtest --sockmq PATH [flags]\n\n"+
			"Kills a sockmq process (SIGKILL) while QoS 1/2 messages flow to persistent subscribers,\n"+
			"restarts it on the same data directory and checks that no acknowledged message is lost\n"+
			"and no QoS 2 message is delivered twice. Exit 0: every round passed; 1: a loss or\n"+
			"duplicate; 2: usage; 3: the harness could not run a round.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return options{}, 0, false
		}
		return options{}, 2, false
	}
	o := options{form: *form, list: *list, timeout: *timeout}
	var ok bool
	if o.plan, ok = forms[*form]; !ok {
		fmt.Fprintf(stderr, "sockmq-killtest: unknown --form %q (short or long)\n", *form)
		return options{}, 2, false
	}
	if *kills > 0 {
		o.plan.kills = *kills
	}
	if *only != "" {
		re, err := regexp.Compile(*only)
		if err != nil {
			fmt.Fprintf(stderr, "sockmq-killtest: --only: %v\n", err)
			return options{}, 2, false
		}
		o.only = re
	}
	if *bin == "" && !*list {
		fmt.Fprintln(stderr, "sockmq-killtest: --sockmq PATH is required")
		return options{}, 2, false
	}
	if *pubs < 1 || *msgs < 1 || *window < 1 || *window > 65535 || *pubs**msgs > 100000 {
		fmt.Fprintln(stderr, "sockmq-killtest: need 1 <= --window <= 65535 and 1 <= --pubs × --msgs <= 100000")
		return options{}, 2, false
	}
	if o.timeout == 0 {
		o.timeout = 10 * time.Minute
		if *form == "long" {
			o.timeout = 2 * time.Hour
		}
	}
	if *seed == 0 {
		*seed = uint64(time.Now().UnixNano())
	}
	o.params = params{bin: *bin, dir: *dir, keep: *keep, runSeed: *seed, pubs: *pubs, msgs: *msgs, window: *window,
		quiet: *quiet, collectLimit: *collect, roundTimeout: *roundTimeout}
	return o, 0, true
}

// run executes a whole run and returns the exit status. hardExit, when
// not nil, ends the process if the run outlives its watchdog by a minute
// (after killing every broker); without it the context alone bounds the
// run.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, hardExit func(int)) int {
	o, code, ok := parseArgs(args, stderr)
	if !ok {
		return code
	}
	var specs []roundSpec
	for _, s := range plan(o.plan) {
		if o.only == nil || o.only.MatchString(s.Name) {
			specs = append(specs, s)
		}
	}
	if o.list {
		for _, s := range specs {
			fmt.Fprintln(stdout, s.Name)
		}
		return 0
	}
	if len(specs) == 0 {
		fmt.Fprintln(stderr, "sockmq-killtest: no round matches --only")
		return 2
	}
	// Brokers run in their rounds' directories: the path must not be
	// relative to this one.
	bin, err := filepath.Abs(o.params.bin)
	if err == nil {
		_, err = os.Stat(bin)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sockmq-killtest: --sockmq: %v\n", err)
		return 2
	}
	o.params.bin = bin
	if o.params.dir == "" {
		d, err := os.MkdirTemp("", "sockmq-killtest-")
		if err != nil {
			fmt.Fprintf(stderr, "sockmq-killtest: %v\n", err)
			return 3
		}
		o.params.dir = d
		if !o.params.keep {
			defer os.RemoveAll(d)
		}
	}

	reg := newRegistry()
	defer reg.killAll()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if hardExit != nil {
		watchdog := time.AfterFunc(o.timeout+time.Minute, func() {
			reg.killAll()
			fmt.Fprintf(stderr, "sockmq-killtest: watchdog: the run did not end within %v\n", o.timeout+time.Minute)
			hardExit(3)
		})
		defer watchdog.Stop()
	}

	start := time.Now()
	fmt.Fprintf(stdout, "sockmq-killtest: %s form, %d rounds, seed %d, %d publishers × %d messages, window %d, sockmq %s\n",
		o.form, len(specs), o.params.runSeed, o.params.pubs, o.params.msgs, o.params.window, o.params.bin)
	printHeader(stdout)
	var sum summary
	errorsInARow := 0
	for _, s := range specs {
		if ctx.Err() != nil {
			fmt.Fprintf(stdout, "run stopped: %v\n", context.Cause(ctx))
			sum.errors++
			break
		}
		r := runRound(ctx, s, o.params, reg)
		printResult(stdout, r)
		sum.add(r)
		if r.err != nil {
			errorsInARow++
		} else {
			errorsInARow = 0
		}
		if errorsInARow == maxErrorsInARow {
			fmt.Fprintf(stdout, "run stopped: %d rounds in a row could not run\n", errorsInARow)
			break
		}
	}
	sum.print(stdout, o.params.runSeed, time.Since(start))
	return sum.code()
}

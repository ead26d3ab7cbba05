package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// roundSpec is one kind of round: what is published, how the subscriber
// waits, how the broker is stopped and when.
type roundSpec struct {
	Name    string
	QoS     byte
	Version byte // mqtt311 or mqtt5
	// Online keeps the subscriber connected while messages are published;
	// otherwise it subscribes, disconnects, and only comes back after the
	// restart (its messages are queued in its offline session).
	Online bool
	// Stop is how the broker is stopped: SIGKILL (crash), SIGTERM
	// (graceful control) or 0 (no restart at all: the harness's own
	// control, which must always pass).
	Stop syscall.Signal
	// AfterSuback stops the broker right after the SUBACK of the
	// persistent subscription, before anything is published; the messages
	// are published after the restart.
	AfterSuback bool
	// Sync is persistence.sync.
	Sync bool
}

// params are the sizes and limits every round of a run shares.
type params struct {
	bin          string
	dir          string // parent of the rounds' directories
	keep         bool   // keep each round's directory (data, config, log)
	runSeed      uint64
	pubs         int // publishers per round
	msgs         int // messages per publisher
	window       int // packet ids in use per publisher
	quiet        time.Duration
	collectLimit time.Duration // how long to wait for the marker after the restart
	roundTimeout time.Duration
}

// roundSeed derives a round's seed from the run's seed and the round's
// name, so that --seed S --only NAME replays the same draws.
func roundSeed(runSeed uint64, name string) uint64 {
	h := uint64(14695981039346656037) // FNV-1a
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= 1099511628211
	}
	return rand.New(rand.NewPCG(runSeed, h)).Uint64()
}

// killPoint draws the acknowledgement count at which the broker is
// stopped: at least one full window acknowledged, and early enough that
// every publisher still has messages in flight.
func killPoint(seed uint64, p params) int {
	r := rand.New(rand.NewPCG(seed, 0x6b696c6c))
	lo := p.window
	hi := p.pubs*p.msgs - 2*p.pubs*p.window
	if hi <= lo {
		return lo
	}
	return lo + r.IntN(hi-lo+1)
}

// round runs one round.
type round struct {
	spec   roundSpec
	p      params
	seed   uint64
	dir    string
	topic  string
	broker *broker
	sub    *subscriber
	res    result
}

func runRound(ctx context.Context, spec roundSpec, p params, reg *registry) result {
	start := time.Now()
	seed := roundSeed(p.runSeed, spec.Name)
	r := &round{spec: spec, p: p, seed: seed, dir: filepath.Join(p.dir, spec.Name), topic: "killtest/" + spec.Name,
		res: result{spec: spec, seed: seed}}
	ctx, cancel := context.WithTimeout(ctx, p.roundTimeout)
	defer cancel()
	if err := os.MkdirAll(r.dir, 0o755); err != nil {
		r.res.err = err
		return r.res
	}
	r.broker = newBroker(p.bin, r.dir, spec.Sync)
	reg.add(r.broker)
	defer func() {
		if r.sub != nil {
			r.sub.drop()
		}
		r.broker.kill()
		reg.remove(r.broker)
		if !p.keep {
			_ = os.RemoveAll(r.dir)
		}
	}()
	r.sub = newSubscriber(spec.Name, "killtest-sub-"+spec.Name, r.topic, spec.Version, spec.QoS)
	err := r.run(ctx)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (round timeout %v or run cancelled)", err, p.roundTimeout)
		}
		r.res.err = err
	}
	r.res.elapsed = time.Since(start)
	return r.res
}

func (r *round) run(ctx context.Context) error {
	if err := r.broker.start(ctx); err != nil {
		return err
	}
	if _, err := r.sub.connect(ctx, r.broker.addr()); err != nil {
		return err
	}
	var before, after map[msgID]bool
	if r.spec.AfterSuback {
		if err := r.sub.subscribe(ctx, func() { r.broker.signal(syscall.SIGKILL) }); err != nil {
			return err
		}
		if err := r.restart(ctx); err != nil {
			return err
		}
		if r.spec.Online {
			if err := r.reconnect(ctx); err != nil {
				return err
			}
		}
		acked, _, err := r.publish(ctx, 0, nil)
		if err != nil {
			return err
		}
		after = acked
	} else {
		if err := r.sub.subscribe(ctx, nil); err != nil {
			return err
		}
		if !r.spec.Online {
			r.sub.disconnect()
		}
		if r.spec.Stop != 0 {
			r.res.killAt = killPoint(r.seed, r.p)
		}
		acked, sent, err := r.publish(ctx, r.res.killAt, func() { r.broker.signal(r.spec.Stop) })
		if err != nil {
			return err
		}
		before = acked
		r.res.acked, r.res.unacked = len(acked), sent-len(acked)
		if r.spec.Stop != 0 {
			if err := r.restart(ctx); err != nil {
				return err
			}
			if r.spec.Online {
				if err := r.reconnect(ctx); err != nil {
					return err
				}
			}
		}
	}
	if after == nil {
		after = make(map[msgID]bool)
	}
	if err := r.publishMarker(ctx); err != nil {
		return err
	}
	after[msgID{markerPub, 0}] = true
	r.res.after = len(after)
	if !r.spec.Online {
		if err := r.reconnect(ctx); err != nil {
			return err
		}
	}
	all := make(map[msgID]bool, len(before)+len(after))
	for id := range before {
		all[id] = true
	}
	for id := range after {
		all[id] = true
	}
	r.collect(ctx, all)
	r.tally(all)
	r.sub.disconnect()
	return nil
}

// publish runs the round's publishers until they finish or, when stopAt
// is positive, until the broker ends after stop was called at the
// stopAt-th acknowledgement. It returns the acknowledged messages and how
// many were sent.
func (r *round) publish(ctx context.Context, stopAt int, stop func()) (acked map[msgID]bool, sent int, err error) {
	// The broker is stopped at the first acknowledgement from the
	// stopAt-th on at which some written message is still unacknowledged.
	var count, written atomic.Int64
	var once sync.Once
	var stopped atomic.Bool
	onSent := func() { written.Add(1) }
	onAck := func() {
		if n := count.Add(1); stopAt > 0 && n >= int64(stopAt) && written.Load() > n {
			once.Do(func() { stop(); stopped.Store(true) })
		}
	}
	pubs := make([]*publisher, r.p.pubs)
	errs := make([]error, r.p.pubs)
	conns := make([]*conn, r.p.pubs)
	for i := range pubs {
		pubs[i] = newPublisher(r.spec.Name, i, r.spec.QoS, r.topic, r.p.window, onSent, onAck)
		c, _, err := dial(ctx, r.broker.addr(), connectOptions{version: r.spec.Version,
			clientID: fmt.Sprintf("killtest-pub-%s-%d", r.spec.Name, i), clean: true, keepAlive: 30})
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return nil, 0, fmt.Errorf("publisher %d: %w", i, err)
		}
		conns[i] = c
	}
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = pubs[i].run(ctx, conns[i], r.p.msgs)
		}()
	}
	wg.Wait()
	acked = make(map[msgID]bool)
	for _, p := range pubs {
		pr := p.result()
		for id := range pr.acked {
			acked[id] = true
		}
		sent += pr.sent
		r.res.refused += pr.refused
		r.res.noMatch += pr.noMatch
	}
	if ctx.Err() != nil {
		return nil, 0, ctx.Err()
	}
	if stopAt == 0 {
		if err := errors.Join(errs...); err != nil {
			return nil, 0, err
		}
		return acked, sent, nil
	}
	if !stopped.Load() {
		return nil, 0, fmt.Errorf("publishers ended after %d acknowledgements without reaching the stop point %d: %w",
			count.Load(), stopAt, errors.Join(errs...))
	}
	return acked, sent, nil
}

// publishMarker publishes the marker after the restart on a fresh
// connection and waits for its acknowledgement.
func (r *round) publishMarker(ctx context.Context) error {
	c, _, err := dial(ctx, r.broker.addr(), connectOptions{version: r.spec.Version,
		clientID: "killtest-marker-" + r.spec.Name, clean: true, keepAlive: 30})
	if err != nil {
		return fmt.Errorf("marker publisher: %w", err)
	}
	m := newPublisher(r.spec.Name, markerPub, r.spec.QoS, r.topic, 1, nil, nil)
	if err := m.run(ctx, c, 1); err != nil {
		return fmt.Errorf("marker: %w", err)
	}
	mr := m.result()
	r.res.noMatch += mr.noMatch
	r.res.refused += mr.refused
	if len(mr.acked) != 1 {
		return errors.New("the broker refused the marker")
	}
	return nil
}

// restart waits for the stopped broker to exit and starts it again on the
// same data directory.
func (r *round) restart(ctx context.Context) error {
	if err := r.broker.wait(); err != nil {
		return err
	}
	want := "signal: killed"
	if r.spec.Stop == syscall.SIGTERM {
		want = "exit status 0"
	}
	if got := r.broker.exitStatus(); got != want {
		r.res.exitNote = fmt.Sprintf("broker ended with %q, expected %q", got, want)
	}
	return r.broker.start(ctx)
}

// reconnect connects the subscriber with its persistent session after the
// restart; a missing session is a durability failure of the round.
func (r *round) reconnect(ctx context.Context) error {
	present, err := r.sub.connect(ctx, r.broker.addr())
	if err != nil {
		return err
	}
	if !present {
		r.res.sessionLost = true
	}
	return nil
}

// collect waits until the subscriber has the marker and every
// acknowledged message, or until it has the marker and nothing arrived
// for the quiet period (the rest will not come: the broker sends a
// session's stored messages before one published after the reconnect),
// or until the marker does not arrive within the collect limit.
func (r *round) collect(ctx context.Context, want map[msgID]bool) {
	limit := time.NewTimer(r.p.collectLimit)
	defer limit.Stop()
	var quiet *time.Timer
	var quietC <-chan time.Time
	defer func() {
		if quiet != nil {
			quiet.Stop()
		}
	}()
	marker := msgID{markerPub, 0}
	for {
		if r.sub.has(marker) {
			if r.sub.missing(want) == 0 {
				return
			}
			if quiet == nil {
				quiet = time.NewTimer(r.p.quiet)
				quietC = quiet.C
			}
		}
		select {
		case <-r.sub.changed:
			if quiet != nil {
				quiet.Reset(r.p.quiet)
			}
		case <-quietC:
			return
		case <-limit.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// tally compares what was acknowledged with what was delivered.
func (r *round) tally(acked map[msgID]bool) {
	c := r.sub.counts()
	r.res.retrans, r.res.idReuse, r.res.foreign = c.retrans, c.idReuse, c.foreign
	r.res.markerSeen = c.delivered[msgID{markerPub, 0}] > 0
	r.res.received, r.res.lost, r.res.dups, r.res.extra = compare(acked, c.delivered)
	r.res.lostRanges = lostRanges(acked, c.delivered, 4)
	r.res.subErr = c.connErr
}

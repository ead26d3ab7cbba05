package main

import (
	"strconv"
	"sync"
	"time"

	"github.com/sockmq/sockmq/internal/topic"
)

// rawKeepalive is the raw client's keepalive (as the paho client's).
const rawKeepalive = 60 * time.Second

func (t *mqttTransport) rawOpts(id string, clean bool) rawDialOpts {
	return rawDialOpts{addr: t.addr, id: id, clean: clean, user: t.user, pass: t.pass, keepalive: rawKeepalive,
		maxPacket: t.size + 64<<10}
}

// rawSub is a subscriber on a raw connection.
type rawSub struct{ c *rawConn }

func (s *rawSub) Close() { s.c.Close() }

// topicFilter checks that a received topic matches the subscription,
// remembering the answers for the few topics a run uses (the lookup does
// not allocate).
type topicFilter struct {
	filter string
	known  map[string]bool
}

func (f *topicFilter) match(t []byte) bool {
	if ok, seen := f.known[string(t)]; seen {
		return ok
	}
	ok := topic.Match(f.filter, string(t))
	if len(f.known) < 1024 {
		f.known[string(t)] = ok
	}
	return ok
}

func (t *mqttTransport) newRawSub(i int, filter string, onMsg func([]byte)) (subscriber, error) {
	// A persistent session may hold messages of an earlier run (same
	// --sub-id): those on other topics are not ours (nil counts as foreign).
	tf := &topicFilter{filter: filter, known: make(map[string]bool)}
	cb := rawCallbacks{message: func(tp, payload []byte) {
		if !tf.match(tp) {
			onMsg(nil)
			return
		}
		onMsg(payload)
	}}
	id, clean := t.clientID("s", i), true
	if t.persistent {
		id, clean = t.subID+strconv.Itoa(i), false
	}
	c, _, err := dialRaw(t.rawOpts(id, clean), cb)
	if err != nil {
		return nil, err
	}
	if err := c.subscribe(filter, t.qos, 10*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return &rawSub{c: c}, nil
}

// rawPub publishes to one topic on a raw connection. QoS 0 publishes are
// done when written. QoS 1/2 publishes take a packet id from a fixed set
// of inflight ids, so at most inflight wait for their acknowledgement;
// the reader times each acknowledgement (PUBACK; PUBCOMP for QoS 2) when
// it arrives and frees the id.
type rawPub struct {
	c     *rawConn
	topic string
	qos   byte
	buf   []byte // the PUBLISH being written (publisher goroutine only)
	timer *time.Timer

	mu       sync.Mutex
	sentAt   []int64 // per packet id (index id-1): unix ns the publish was sent
	stage    []byte  // per packet id: 0 free, 1 waiting for PUBACK/PUBREC, 2 for PUBCOMP
	free     []uint16
	freeHead int
	freeN    int
	open     int // publishes waiting for their acknowledgement
	hist     histogram
	failed   int   // failed acknowledgements not yet returned by Publish
	firstErr error // the first failed acknowledgement
	dead     error // the connection ended
	waiting  bool
	freed    chan struct{} // a signal to a waiting publisher
}

// maxInflight is the most packet ids a raw publisher uses.
const maxInflight = 65535

func (t *mqttTransport) newRawPub(i int, topic string) (publisher, error) {
	p := &rawPub{topic: topic, qos: t.qos, freed: make(chan struct{}, 1)}
	if t.qos > 0 {
		n := min(t.inflight, maxInflight)
		p.sentAt = make([]int64, n)
		p.stage = make([]byte, n)
		p.free = make([]uint16, n)
		for k := range p.free {
			p.free[k] = uint16(k + 1)
		}
		p.freeN = n
		p.timer = time.NewTimer(time.Hour)
		p.timer.Stop()
	}
	c, _, err := dialRaw(t.rawOpts(t.clientID("p", i), true), rawCallbacks{ack: p.ack, closed: p.closed})
	if err != nil {
		return nil, err
	}
	p.c = c
	return p, nil
}

// Publish writes one PUBLISH. For QoS 1/2 it first waits for a free
// packet id, and it returns one acknowledgement failure not reported yet,
// if any.
func (p *rawPub) Publish(payload []byte) error {
	if p.qos == 0 {
		p.buf = appendPublish(p.buf[:0], p.topic, payload, 0, 0)
		return p.c.write(p.buf)
	}
	id, err := p.acquire()
	if err != nil {
		return err
	}
	p.buf = appendPublish(p.buf[:0], p.topic, payload, p.qos, id)
	if err := p.c.write(p.buf); err != nil {
		p.mu.Lock()
		if p.stage[id-1] != 0 {
			p.release(id)
		}
		p.mu.Unlock()
		return err
	}
	return p.take()
}

// acquire takes a free packet id and marks it sent now. Publishes not
// acknowledged within ackTimeout fail and give their id back.
func (p *rawPub) acquire() (uint16, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.freeN == 0 {
		if p.dead != nil {
			return 0, p.dead
		}
		p.waiting = true
		p.mu.Unlock()
		if p.waitFreed(time.Second) {
			p.mu.Lock()
			p.waiting = false
			continue
		}
		p.mu.Lock()
		p.waiting = false
		p.expire(time.Now().Add(-ackTimeout).UnixNano())
	}
	if p.dead != nil {
		return 0, p.dead
	}
	id := p.free[p.freeHead]
	p.freeHead = (p.freeHead + 1) % len(p.free)
	p.freeN--
	p.stage[id-1] = 1
	p.sentAt[id-1] = time.Now().UnixNano()
	p.open++
	return id, nil
}

// waitFreed waits (p.mu not held) until an id is freed or d has passed,
// and reports whether one was freed; publishes that waited too long for
// their acknowledgement are expired only in the second case.
func (p *rawPub) waitFreed(d time.Duration) bool {
	p.timer.Reset(d)
	defer p.timer.Stop()
	select {
	case <-p.freed:
		return true
	case <-p.timer.C:
		return false
	}
}

// release gives an id back (p.mu held).
func (p *rawPub) release(id uint16) {
	p.stage[id-1] = 0
	p.free[(p.freeHead+p.freeN)%len(p.free)] = id
	p.freeN++
	p.open--
	if p.waiting {
		select {
		case p.freed <- struct{}{}:
		default:
		}
	}
}

// fail counts one failed acknowledgement (p.mu held).
func (p *rawPub) fail(id uint16, err error) {
	p.release(id)
	p.failed++
	if p.firstErr == nil {
		p.firstErr = err
	}
}

// expire fails the publishes sent before cutoff (unix ns; p.mu held).
func (p *rawPub) expire(cutoff int64) {
	for k, s := range p.stage {
		if s != 0 && p.sentAt[k] < cutoff {
			p.fail(uint16(k+1), errAckTimeout)
		}
	}
}

// take returns one failed acknowledgement not reported yet, if any.
func (p *rawPub) take() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failed == 0 {
		return nil
	}
	p.failed--
	return p.firstErr
}

// ack is called by the reader for PUBACK, PUBREC and PUBCOMP. An id that
// is not waiting for that packet (acknowledged late, after it failed) is
// ignored.
func (p *rawPub) ack(typ byte, id uint16, now time.Time) {
	if p.qos == 0 || id == 0 || int(id) > len(p.stage) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	k := id - 1
	switch {
	case typ == pktPuback && p.qos == 1 && p.stage[k] == 1,
		typ == pktPubcomp && p.qos == 2 && p.stage[k] == 2:
		p.hist.record(now.UnixNano() - p.sentAt[k])
		p.release(id)
	case typ == pktPubrec && p.qos == 2 && p.stage[k] == 1:
		p.stage[k] = 2
	}
}

// closed fails every publish still waiting when the connection ends.
func (p *rawPub) closed(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dead = err
	for k, s := range p.stage {
		if s != 0 {
			p.fail(uint16(k+1), err)
		}
	}
	p.waiting = true // wake a publisher waiting for an id
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// Flush waits, within timeout, until every publish is acknowledged or has
// failed, and returns the first failure.
func (p *rawPub) Flush(timeout time.Duration) error {
	if p.qos == 0 {
		return nil
	}
	deadline := time.Now().Add(timeout)
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.open > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			p.expire(deadline.UnixNano() + 1)
			return errAckTimeout
		}
		p.waiting = true
		p.mu.Unlock()
		freed := p.waitFreed(min(left, time.Second))
		p.mu.Lock()
		p.waiting = false
		if !freed {
			p.expire(time.Now().Add(-ackTimeout).UnixNano())
		}
	}
	return p.firstErr
}

// ackTimes adds this publisher's acknowledgement times to h.
func (p *rawPub) ackTimes(h *histogram) {
	p.mu.Lock()
	h.merge(&p.hist)
	p.mu.Unlock()
}

func (p *rawPub) Close() { p.c.Close() }

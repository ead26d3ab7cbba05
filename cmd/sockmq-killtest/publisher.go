package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
)

// msgID names one published message: its publisher and sequence number.
// Publisher markerPub is the post-restart marker.
type msgID struct{ pub, seq int }

// markerPub is the publisher number of the marker published after the
// restart.
const markerPub = -1

// payloadFor encodes a message's identity; the round name keeps payloads
// of different rounds apart in a broker's log or store.
func payloadFor(round string, id msgID) []byte {
	return []byte("kt " + round + " " + strconv.Itoa(id.pub) + " " + strconv.Itoa(id.seq))
}

// parsePayload reverses payloadFor.
func parsePayload(round string, b []byte) (msgID, bool) {
	f := strings.Fields(string(b))
	if len(f) != 4 || f[0] != "kt" || f[1] != round {
		return msgID{}, false
	}
	pub, err1 := strconv.Atoi(f[2])
	seq, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || seq < 0 || pub < markerPub {
		return msgID{}, false
	}
	return msgID{pub, seq}, true
}

// publisher sends QoS 1 or 2 messages on one clean-session connection with
// at most window packet ids in use, and records which the broker
// acknowledged: PUBACK for QoS 1, PUBREC for QoS 2 (the broker's promise
// that it owns the message; the PUBREL/PUBCOMP exchange that follows only
// releases the packet id). It never retransmits: a message unacknowledged
// when the connection breaks stays unacknowledged.
type publisher struct {
	round  string
	num    int
	qos    byte
	topic  string
	window int
	// onSent is called after each PUBLISH is written and onAck (on the
	// reader goroutine) after each acknowledgement; either may be nil.
	onSent, onAck func()

	mu       sync.Mutex
	acked    map[msgID]bool
	sent     int
	inflight map[uint16]int // packet id -> sequence number
	freeIDs  []uint16
	slots    chan struct{}
	refused  int // MQTT 5 acknowledgements with a failure reason code
	noMatch  int // MQTT 5 acknowledgements with 0x10 "no matching subscribers"
}

func newPublisher(round string, num int, qos byte, topic string, window int, onSent, onAck func()) *publisher {
	p := &publisher{round: round, num: num, qos: qos, topic: topic, window: window, onSent: onSent, onAck: onAck,
		acked: make(map[msgID]bool), inflight: make(map[uint16]int), slots: make(chan struct{}, window)}
	for i := window; i >= 1; i-- {
		p.freeIDs = append(p.freeIDs, uint16(i))
	}
	return p
}

// run publishes sequence numbers [0, count) on c and returns when all are
// complete, the connection ends, or ctx ends. The returned error is nil
// when every message completed.
func (p *publisher) run(ctx context.Context, c *conn, count int) error {
	defer closeOnCancel(ctx, c)()
	readerDone := make(chan error, 1)
	go func() { readerDone <- p.readAcks(c) }()
	for seq := 0; seq < count; seq++ {
		select {
		case p.slots <- struct{}{}:
		case err := <-readerDone:
			c.close()
			return fmt.Errorf("publisher %d: connection ended after %d sent: %w", p.num, seq, err)
		}
		p.mu.Lock()
		id := p.freeIDs[len(p.freeIDs)-1]
		p.freeIDs = p.freeIDs[:len(p.freeIDs)-1]
		p.inflight[id] = seq
		p.sent++
		p.mu.Unlock()
		if err := c.write(publishPacket(c.version, p.topic, p.qos, id, false, payloadFor(p.round, msgID{p.num, seq}))); err != nil {
			c.close()
			return fmt.Errorf("publisher %d: send: %w", p.num, err)
		}
		if p.onSent != nil {
			p.onSent()
		}
	}
	// Wait until every packet id is free again (all slots returned).
	for i := 0; i < p.window; i++ {
		select {
		case p.slots <- struct{}{}:
		case err := <-readerDone:
			c.close()
			return fmt.Errorf("publisher %d: connection ended with messages in flight: %w", p.num, err)
		}
	}
	c.disconnect()
	<-readerDone
	return nil
}

// readAcks handles PUBACK, PUBREC and PUBCOMP until the connection ends.
func (p *publisher) readAcks(c *conn) error {
	for {
		pk, err := c.read()
		if err != nil {
			return err
		}
		switch pk.typ {
		case typePuback, typePubrec, typePubcomp:
			id, reason, err := parseAck(pk)
			if err != nil {
				return err
			}
			if err := p.ack(c, pk.typ, id, reason); err != nil {
				return err
			}
		case typeDisconnect:
			return fmt.Errorf("server sent DISCONNECT")
		case typePingresp:
		default:
			return fmt.Errorf("publisher got unexpected packet type %d", pk.typ)
		}
	}
}

func (p *publisher) ack(c *conn, typ byte, id uint16, reason byte) error {
	p.mu.Lock()
	seq, ok := p.inflight[id]
	if !ok {
		p.mu.Unlock()
		return fmt.Errorf("ack type %d for unknown packet id %d", typ, id)
	}
	if (typ == typePuback && p.qos != 1) || (typ != typePuback && p.qos != 2) {
		p.mu.Unlock()
		return fmt.Errorf("ack type %d for a QoS %d publish", typ, p.qos)
	}
	promise := typ == typePuback || typ == typePubrec
	done := typ == typePuback || typ == typePubcomp || reason >= 0x80
	if promise && reason < 0x80 {
		p.acked[msgID{p.num, seq}] = true
	}
	if reason >= 0x80 {
		p.refused++
	}
	if promise && reason == 0x10 {
		p.noMatch++
	}
	if done {
		delete(p.inflight, id)
		p.freeIDs = append(p.freeIDs, id)
	}
	p.mu.Unlock()
	if promise && reason < 0x80 && p.onAck != nil {
		p.onAck()
	}
	if typ == typePubrec && reason < 0x80 {
		if err := c.write(ackPacket(typePubrel, id)); err != nil {
			return err
		}
	}
	if done {
		<-p.slots
	}
	return nil
}

// publisherResult is what one publisher saw.
type publisherResult struct {
	acked   map[msgID]bool
	sent    int
	refused int // acknowledgements with a failure reason code (MQTT 5)
	noMatch int // acknowledgements saying no subscriber matched (MQTT 5)
}

func (p *publisher) result() publisherResult {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[msgID]bool, len(p.acked))
	for k := range p.acked {
		out[k] = true
	}
	return publisherResult{acked: out, sent: p.sent, refused: p.refused, noMatch: p.noMatch}
}

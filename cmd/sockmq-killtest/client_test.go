package main

import (
	"bufio"
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// peer is the broker's end of a net.Pipe: the test writes what a broker
// would send and reads what the client answers.
type peer struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func pipe(t *testing.T, version byte) (*conn, *peer) {
	t.Helper()
	a, b := net.Pipe()
	t.Cleanup(func() { a.Close(); b.Close() })
	c := &conn{version: version, nc: a, br: bufio.NewReader(a), done: make(chan struct{})}
	return c, &peer{t: t, nc: b, br: bufio.NewReader(b)}
}

func (p *peer) send(b []byte) {
	p.t.Helper()
	_ = p.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := p.nc.Write(b); err != nil {
		p.t.Fatalf("peer write: %v", err)
	}
}

// expect reads the client's next packet and checks its type and id.
func (p *peer) expect(typ byte, id uint16) {
	p.t.Helper()
	_ = p.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	pk, err := readPacket(p.br)
	if err != nil {
		p.t.Fatalf("peer read: %v", err)
	}
	got, _, err := parseAck(pk)
	if pk.typ != typ || err != nil || got != id {
		p.t.Fatalf("client sent type %d id %d (%v), want type %d id %d", pk.typ, got, err, typ, id)
	}
}

func TestSubscriberQoS2DeliversOncePerRelease(t *testing.T) {
	for _, v := range []byte{mqtt311, mqtt5} {
		s := newSubscriber("r", "sub", "killtest/r", v, 2)
		c, b := pipe(t, v)
		s.attach(c, false)
		m := payloadFor("r", msgID{0, 1})

		b.send(publishPacket(v, "killtest/r", 2, 7, false, m))
		b.expect(typePubrec, 7)
		// A retransmission before PUBREL is acknowledged, not delivered.
		b.send(publishPacket(v, "killtest/r", 2, 7, true, m))
		b.expect(typePubrec, 7)
		// Another message under the unreleased id is a broker fault.
		b.send(publishPacket(v, "killtest/r", 2, 7, true, payloadFor("r", msgID{0, 2})))
		b.expect(typePubrec, 7)
		b.send(ackPacket(typePubrel, 7))
		b.expect(typePubcomp, 7)
		got := s.counts()
		if got.delivered[msgID{0, 1}] != 1 || got.retrans != 1 || got.idReuse != 1 {
			t.Fatalf("v%d before release: %+v", v, got)
		}
		// Once released, the same message again is a duplicate delivery.
		b.send(publishPacket(v, "killtest/r", 2, 7, true, m))
		b.expect(typePubrec, 7)
		if n := s.counts().delivered[msgID{0, 1}]; n != 2 {
			t.Fatalf("v%d: a PUBLISH after PUBREL delivered %d times in all, want 2", v, n)
		}
		s.drop()
	}
}

func TestSubscriberKeepsQoS2StateAcrossReconnect(t *testing.T) {
	s := newSubscriber("r", "sub", "killtest/r", mqtt5, 2)
	c1, b1 := pipe(t, mqtt5)
	s.attach(c1, false)
	m := payloadFor("r", msgID{1, 5})
	b1.send(publishPacket(mqtt5, "killtest/r", 2, 9, false, m))
	b1.expect(typePubrec, 9)
	s.drop() // the broker dies before PUBREL

	// Session resumed: the broker's resend of id 9 is not a new delivery.
	c2, b2 := pipe(t, mqtt5)
	s.attach(c2, true)
	b2.send(publishPacket(mqtt5, "killtest/r", 2, 9, true, m))
	b2.expect(typePubrec, 9)
	if got := s.counts(); got.delivered[msgID{1, 5}] != 1 || got.retrans != 1 {
		t.Fatalf("after resumed session: %+v", got)
	}
	s.drop()

	// No session on the server: the client forgets its state, so the same
	// message is delivered again (and counted as a duplicate).
	c3, b3 := pipe(t, mqtt5)
	s.attach(c3, false)
	b3.send(publishPacket(mqtt5, "killtest/r", 2, 9, true, m))
	b3.expect(typePubrec, 9)
	if n := s.counts().delivered[msgID{1, 5}]; n != 2 {
		t.Fatalf("after a lost session: delivered %d times, want 2", n)
	}
	s.drop()
}

func TestSubscriberQoS1AndForeignMessages(t *testing.T) {
	s := newSubscriber("r", "sub", "killtest/r", mqtt311, 1)
	c, b := pipe(t, mqtt311)
	s.attach(c, false)
	m := payloadFor("r", msgID{0, 3})
	b.send(publishPacket(mqtt311, "killtest/r", 1, 1, false, m))
	b.expect(typePuback, 1)
	b.send(publishPacket(mqtt311, "killtest/r", 1, 1, true, m))
	b.expect(typePuback, 1)
	b.send(publishPacket(mqtt311, "killtest/r", 1, 2, false, payloadFor("other", msgID{0, 3})))
	b.expect(typePuback, 2)
	if got := s.counts(); got.delivered[msgID{0, 3}] != 2 || got.foreign != 1 {
		t.Fatalf("QoS 1: %+v", got)
	}
	s.drop()
}

func TestPublisherCountsQoS2AtPubrec(t *testing.T) {
	c, b := pipe(t, mqtt5)
	var acks atomic.Int32
	p := newPublisher("r", 0, 2, "killtest/r", 2, nil, func() { acks.Add(1) })
	done := make(chan error, 1)
	go func() { done <- p.run(context.Background(), c, 3) }()

	read := func() publish {
		t.Helper()
		pk, err := readPacket(b.br)
		if err != nil || pk.typ != typePublish {
			t.Fatalf("expected PUBLISH, got type %d: %v", pk.typ, err)
		}
		pub, err := parsePublish(mqtt5, pk)
		if err != nil {
			t.Fatal(err)
		}
		return pub
	}
	first, second := read(), read()
	if first.id == second.id {
		t.Fatalf("two messages in flight under packet id %d", first.id)
	}
	// The window is 2: nothing more is sent until a packet id is free.
	b.send(ackPacket(typePubrec, first.id))
	b.expect(typePubrel, first.id)
	if r := p.result(); !r.acked[msgID{0, 0}] || r.acked[msgID{0, 1}] {
		t.Fatalf("after PUBREC of the first: acked %v", r.acked)
	}
	b.send(ackPacket(typePubcomp, first.id))
	third := read()
	if id, _ := parsePayload("r", third.payload); id.seq != 2 {
		t.Fatalf("third message is %+v", id)
	}
	// The connection breaks with two messages unacknowledged.
	b.nc.Close()
	if err := <-done; err == nil {
		t.Fatal("run returned no error for a broken connection")
	}
	r := p.result()
	if len(r.acked) != 1 || r.sent != 3 || acks.Load() != 1 {
		t.Fatalf("acked %v (callback %d) sent %d, want 1 acked of 3 sent", r.acked, acks.Load(), r.sent)
	}
}

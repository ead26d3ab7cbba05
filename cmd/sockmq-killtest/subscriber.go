package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
)

// subscriber is a persistent-session subscriber that keeps its own MQTT
// session state, so that what it counts is what the broker sent and
// nothing a client library added or hid.
//
// One subscriber object lives for a whole round, across the broker's
// restart: it reconnects with clean session/clean start false and keeps
// the QoS 2 receiver state of [MQTT-4.3.3] between connections: the packet
// ids it answered with PUBREC and for which no PUBREL has come yet. A
// PUBLISH for such an id is the broker's retransmission and is
// acknowledged again but not delivered; any other PUBLISH is delivered to
// the application (counted). So a QoS 2 message delivered twice is one the
// broker sent again after it had released the packet id (PUBREL) or under
// a new packet id: the broker's fault, not the client's.
type subscriber struct {
	version byte
	qos     byte
	id      string
	topic   string
	round   string

	mu         sync.Mutex
	conn       *conn
	suback     chan subackResult
	onSuback   func()
	delivered  map[msgID]int     // application deliveries per message
	unreleased map[uint16][]byte // QoS 2: PUBREC sent, PUBREL not yet received
	retrans    int               // retransmissions of unreleased ids (not delivered)
	idReuse    int               // a different message under an unreleased id
	foreign    int               // payloads that are not this round's
	connErr    error             // why the current connection ended, if it did
	changed    chan struct{}     // signalled (non-blocking) on every delivery
}

type subackResult struct {
	code byte
	err  error
}

func newSubscriber(round, id, topic string, version, qos byte) *subscriber {
	return &subscriber{version: version, qos: qos, id: id, topic: topic, round: round,
		delivered: make(map[msgID]int), unreleased: make(map[uint16][]byte), changed: make(chan struct{}, 1)}
}

// connect opens a connection with the persistent session and returns
// whether the broker said it had the session. An earlier connection is
// closed first.
func (s *subscriber) connect(ctx context.Context, addr string) (sessionPresent bool, err error) {
	s.drop()
	c, ca, err := dial(ctx, addr, connectOptions{version: s.version, clientID: s.id, clean: false,
		keepAlive: 30, sessionExpiry: 3600})
	if err != nil {
		return false, fmt.Errorf("subscriber connect: %w", err)
	}
	s.attach(c, ca.sessionPresent)
	return ca.sessionPresent, nil
}

// attach makes c the subscriber's connection and starts reading it.
func (s *subscriber) attach(c *conn, sessionPresent bool) {
	s.mu.Lock()
	s.conn = c
	s.connErr = nil
	s.suback = make(chan subackResult, 1)
	if !sessionPresent {
		// [MQTT-3.2.2-4]: without a session on the server the client
		// discards its own session state.
		clear(s.unreleased)
	}
	s.mu.Unlock()
	go s.readLoop(c)
}

// subscribe subscribes to the round's topic and waits for SUBACK. onSuback,
// when not nil, runs on the reader goroutine as soon as the SUBACK is
// parsed, before anything else happens (the SUBACK kill point).
func (s *subscriber) subscribe(ctx context.Context, onSuback func()) error {
	s.mu.Lock()
	c, ch := s.conn, s.suback
	s.onSuback = onSuback
	s.mu.Unlock()
	if c == nil {
		return errors.New("subscribe: not connected")
	}
	if err := c.write(subscribePacket(s.version, 1, s.topic, s.qos)); err != nil {
		return fmt.Errorf("send subscribe: %w", err)
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return r.err
		}
		if r.code != s.qos {
			return fmt.Errorf("subscription granted with code 0x%02x, want QoS %d", r.code, s.qos)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("no SUBACK: %w", ctx.Err())
	}
}

// disconnect ends the connection normally; the session stays (offline).
func (s *subscriber) disconnect() {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		c.disconnect()
	}
}

// drop closes the connection without DISCONNECT.
func (s *subscriber) drop() {
	s.mu.Lock()
	c := s.conn
	s.conn = nil
	s.mu.Unlock()
	if c != nil {
		c.close()
	}
}

func (s *subscriber) readLoop(c *conn) {
	for {
		pk, err := c.read()
		if err == nil {
			err = s.handle(c, pk)
		}
		if err != nil {
			c.close()
			s.mu.Lock()
			current, ch := s.conn == c, s.suback
			if current {
				s.connErr = err
			}
			s.mu.Unlock()
			if current { // a SUBACK still awaited on this connection never comes
				select {
				case ch <- subackResult{err: fmt.Errorf("connection ended before SUBACK: %w", err)}:
				default:
				}
			}
			return
		}
	}
}

func (s *subscriber) handle(c *conn, pk packet) error {
	switch pk.typ {
	case typePublish:
		p, err := parsePublish(s.version, pk)
		if err != nil {
			return err
		}
		return s.receive(c, p)
	case typePubrel:
		id, _, err := parseAck(pk)
		if err != nil {
			return err
		}
		s.mu.Lock()
		delete(s.unreleased, id)
		s.mu.Unlock()
		return c.write(ackPacket(typePubcomp, id))
	case typeSuback:
		_, code, err := parseSuback(s.version, pk.body)
		s.mu.Lock()
		hook, ch := s.onSuback, s.suback
		s.mu.Unlock()
		if hook != nil && err == nil {
			hook()
		}
		select {
		case ch <- subackResult{code: code, err: err}:
		default:
		}
		return nil
	case typePingresp:
		return nil
	case typeDisconnect:
		return errors.New("server sent DISCONNECT")
	default:
		return fmt.Errorf("subscriber got unexpected packet type %d", pk.typ)
	}
}

// receive applies the receiver's side of QoS 0, 1 and 2 to one PUBLISH.
func (s *subscriber) receive(c *conn, p publish) error {
	s.mu.Lock()
	deliver := true
	if p.qos == 2 {
		if prev, ok := s.unreleased[p.id]; ok {
			deliver = false
			if bytes.Equal(prev, p.payload) {
				s.retrans++
			} else {
				s.idReuse++
			}
		} else {
			s.unreleased[p.id] = p.payload
		}
	}
	if deliver {
		if id, ok := parsePayload(s.round, p.payload); ok && p.topic == s.topic {
			s.delivered[id]++
		} else {
			s.foreign++
		}
	}
	s.mu.Unlock()
	if deliver {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	switch p.qos {
	case 1:
		return c.write(ackPacket(typePuback, p.id))
	case 2:
		return c.write(ackPacket(typePubrec, p.id))
	}
	return nil
}

// subscriberCounts is a snapshot of what the subscriber received.
type subscriberCounts struct {
	delivered map[msgID]int
	retrans   int
	idReuse   int
	foreign   int
	connErr   error
}

func (s *subscriber) counts() subscriberCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := make(map[msgID]int, len(s.delivered))
	for k, v := range s.delivered {
		d[k] = v
	}
	return subscriberCounts{delivered: d, retrans: s.retrans, idReuse: s.idReuse, foreign: s.foreign, connErr: s.connErr}
}

// has reports whether message id was delivered.
func (s *subscriber) has(id msgID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.delivered[id] > 0
}

// missing returns how many of want were not delivered.
func (s *subscriber) missing(want map[msgID]bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for id := range want {
		if s.delivered[id] == 0 {
			n++
		}
	}
	return n
}

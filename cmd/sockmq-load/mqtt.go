package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
)

// connLost counts clients whose connection dropped during a run.
var connLost atomic.Int64

// mqttTransport makes MQTT 3.1.1 clients with paho.mqtt.golang: clean
// sessions, keepalive 60s, no automatic reconnect.
type mqttTransport struct {
	addr       string
	qos        byte
	user, pass string
	inflight   int
	seq        atomic.Int64
}

func (t *mqttTransport) target() string { return "mqtt://" + t.addr }

func (t *mqttTransport) connect(role string, i int, onMsg pahov3.MessageHandler) (pahov3.Client, error) {
	id := "sockmq-load-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-" + role + strconv.Itoa(i) + "-" + strconv.FormatInt(t.seq.Add(1), 10)
	o := pahov3.NewClientOptions().AddBroker("tcp://" + t.addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(true).SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(10 * time.Second).SetOrderMatters(true).
		SetConnectionLostHandler(func(pahov3.Client, error) { connLost.Add(1) })
	if t.user != "" {
		o.SetUsername(t.user).SetPassword(t.pass)
	}
	if onMsg != nil {
		o.SetDefaultPublishHandler(onMsg)
	}
	c := pahov3.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

type mqttSub struct{ c pahov3.Client }

func (s *mqttSub) Close() { s.c.Disconnect(50) }

func (t *mqttTransport) newSub(_ context.Context, i int, filter string, _ []string, onMsg func([]byte)) (subscriber, error) {
	h := func(_ pahov3.Client, m pahov3.Message) { onMsg(m.Payload()) }
	c, err := t.connect("s", i, h)
	if err != nil {
		return nil, err
	}
	tok := c.Subscribe(filter, t.qos, h)
	if !tok.WaitTimeout(10 * time.Second) {
		c.Disconnect(0)
		return nil, errors.New("subscribe timed out")
	}
	if err := tok.Error(); err != nil {
		c.Disconnect(0)
		return nil, err
	}
	if st, ok := tok.(*pahov3.SubscribeToken); ok {
		if q := st.Result()[filter]; q == 0x80 {
			c.Disconnect(0)
			return nil, fmt.Errorf("subscription to %s refused", filter)
		}
	}
	return &mqttSub{c: c}, nil
}

// mqttPub publishes to one topic, keeping at most inflight publishes
// unconfirmed (QoS>0: acknowledged; QoS 0: written to the socket).
type mqttPub struct {
	c       pahov3.Client
	topic   string
	qos     byte
	pending *window[pahov3.Token]
}

func waitToken(tok pahov3.Token, timeout time.Duration) error {
	if !tok.WaitTimeout(timeout) {
		return errors.New("publish not acknowledged in time")
	}
	return tok.Error()
}

func (t *mqttTransport) newPub(_ context.Context, i int, topic string) (publisher, error) {
	c, err := t.connect("p", i, nil)
	if err != nil {
		return nil, err
	}
	return &mqttPub{c: c, topic: topic, qos: t.qos, pending: newWindow(t.inflight, waitToken)}, nil
}

func (p *mqttPub) Publish(payload []byte) error {
	var err error
	if p.pending.full() {
		err = p.pending.waitOldest(10 * time.Second)
	}
	p.pending.push(p.c.Publish(p.topic, p.qos, false, payload))
	return err
}

func (p *mqttPub) Flush(timeout time.Duration) error { return p.pending.flush(timeout) }

func (p *mqttPub) Close() { p.c.Disconnect(50) }

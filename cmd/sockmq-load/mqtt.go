package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/internal/topic"
)

// connLost counts clients whose connection dropped during a run.
var connLost atomic.Int64

// The MQTT client libraries of the load tool (--client).
const (
	clientRaw  = "raw"  // the tool's own client (rawconn.go), cheap per message
	clientPaho = "paho" // paho.mqtt.golang
)

// mqttTransport makes MQTT 3.1.1 clients with the raw client or with
// paho.mqtt.golang: keepalive 60s, no automatic reconnect, clean sessions,
// except subscribers when persistent is set.
type mqttTransport struct {
	client     string // clientRaw or clientPaho
	size       int    // payload size (the raw client's packet limit follows it)
	addr       string
	qos        byte
	user, pass string
	inflight   int
	seq        atomic.Int64
	// persistent makes subscribers use persistent sessions
	// (clean_session=false) with the client ids subID+"0", subID+"1", ...;
	// their sessions stay on the broker after the run.
	persistent bool
	subID      string
}

func (t *mqttTransport) target() string { return "mqtt://" + t.addr }

// clientID is a fresh id for a client with a clean session.
func (t *mqttTransport) clientID(role string, i int) string {
	return "sockmq-load-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-" + role + strconv.Itoa(i) + "-" + strconv.FormatInt(t.seq.Add(1), 10)
}

func (t *mqttTransport) connect(role string, i int, onMsg pahov3.MessageHandler) (pahov3.Client, error) {
	return t.connectAs(t.clientID(role, i), true, onMsg)
}

func (t *mqttTransport) connectAs(id string, clean bool, onMsg pahov3.MessageHandler) (pahov3.Client, error) {
	o := pahov3.NewClientOptions().AddBroker("tcp://" + t.addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(clean).SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectRetry(false).
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

func (t *mqttTransport) newSub(ctx context.Context, i int, filter string, topics []string, onMsg func([]byte)) (subscriber, error) {
	if t.client == clientPaho {
		return t.newPahoSub(ctx, i, filter, topics, onMsg)
	}
	return t.newRawSub(i, filter, onMsg)
}

func (t *mqttTransport) newPub(ctx context.Context, i int, topic string) (publisher, error) {
	if t.client == clientPaho {
		return t.newPahoPub(ctx, i, topic)
	}
	return t.newRawPub(i, topic)
}

func (t *mqttTransport) newPahoSub(_ context.Context, i int, filter string, _ []string, onMsg func([]byte)) (subscriber, error) {
	// A persistent session may hold messages of an earlier run (same
	// --sub-id): those on other topics are not ours (nil counts as foreign).
	h := func(_ pahov3.Client, m pahov3.Message) {
		if !topic.Match(filter, m.Topic()) {
			onMsg(nil)
			return
		}
		onMsg(m.Payload())
	}
	var c pahov3.Client
	var err error
	if t.persistent {
		c, err = t.connectAs(t.subID+strconv.Itoa(i), false, h)
	} else {
		c, err = t.connect("s", i, h)
	}
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
// unconfirmed (QoS>0: acknowledged; QoS 0: written to the socket). For
// QoS>0 it times every acknowledgement.
type mqttPub struct {
	c       pahov3.Client
	topic   string
	qos     byte
	pending *window[pahov3.Token]   // QoS 0
	acks    *ackTimer[pahov3.Token] // QoS 1 and 2
}

func waitToken(tok pahov3.Token, timeout time.Duration) error {
	if !tok.WaitTimeout(timeout) {
		return errAckTimeout
	}
	return tok.Error()
}

func (t *mqttTransport) newPahoPub(_ context.Context, i int, topic string) (publisher, error) {
	c, err := t.connect("p", i, nil)
	if err != nil {
		return nil, err
	}
	p := &mqttPub{c: c, topic: topic, qos: t.qos}
	if t.qos == 0 {
		p.pending = newWindow(t.inflight, waitToken)
	} else {
		p.acks = newAckTimer(t.inflight, waitToken)
	}
	return p, nil
}

func (p *mqttPub) Publish(payload []byte) error {
	if p.acks != nil {
		p.acks.reserve()
		p.acks.add(time.Now(), p.c.Publish(p.topic, p.qos, false, payload))
		return p.acks.take()
	}
	var err error
	if p.pending.full() {
		err = p.pending.waitOldest(ackTimeout)
	}
	p.pending.push(p.c.Publish(p.topic, p.qos, false, payload))
	return err
}

func (p *mqttPub) Flush(timeout time.Duration) error {
	if p.acks != nil {
		return p.acks.close(timeout)
	}
	return p.pending.flush(timeout)
}

// ackTimes adds this publisher's acknowledgement times to h.
func (p *mqttPub) ackTimes(h *histogram) {
	if p.acks != nil {
		p.acks.mergeInto(h)
	}
}

func (p *mqttPub) Close() {
	if p.acks != nil {
		_ = p.acks.close(0)
	}
	p.c.Disconnect(50)
}

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"

	"github.com/sockmq/sockmq/internal/testutil"
)

// runJSON runs the tool with --json and decodes its result.
func runJSON(t *testing.T, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append(args, "--json"), &out, &errb)
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("exit %d, output %q, stderr %q: %v", code, out.String(), errb.String(), err)
	}
	if code != 0 || r.Error != "" {
		t.Fatalf("exit %d, error %q, stderr %q", code, r.Error, errb.String())
	}
	return r
}

// TestPersistentSubscribers: with --persistent the subscribers use
// persistent sessions under the given client ids, receive everything, and
// their sessions (with the subscription) are still on the broker after
// the run: reconnecting finds the session and receives a new message
// without subscribing again.
func TestPersistentSubscribers(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	addr := b.MQTTAddr()
	r := runJSON(t, "mqtt", "--addr", addr, "--pubs", "2", "--subs", "2", "--msgs", "300", "--qos", "1",
		"--persistent", "--sub-id", "loadtest-s", "--topic", "loadtest", "--timeout", "60s")
	if !r.Persistent || r.SubID != "loadtest-s" {
		t.Errorf("result says persistent %v, sub id %q", r.Persistent, r.SubID)
	}
	if r.Expected != 1200 || r.Delivered != 1200 || r.Lost != 0 || r.Duplicates != 0 || r.Foreign != 0 {
		t.Fatalf("expected %d delivered %d lost %d dup %d foreign %d", r.Expected, r.Delivered, r.Lost, r.Duplicates, r.Foreign)
	}
	if r.Acked != 600 || r.AckP50Ms <= 0 || r.AckP99Ms < r.AckP50Ms {
		t.Errorf("acked %d, ack p50 %v p99 %v ms", r.Acked, r.AckP50Ms, r.AckP99Ms)
	}

	pub, err := testutil.Connect3(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		got := make(chan string, 1)
		o := pahov3.NewClientOptions().AddBroker("tcp://" + addr).SetProtocolVersion(4).
			SetClientID("loadtest-s" + strconv.Itoa(i)).SetCleanSession(false).SetAutoReconnect(false).
			SetDefaultPublishHandler(func(_ pahov3.Client, m pahov3.Message) {
				select {
				case got <- m.Topic() + " " + string(m.Payload()):
				default:
				}
			})
		c := pahov3.NewClient(o)
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("reconnect subscriber %d: %v", i, tok.Error())
		}
		if !tok.(*pahov3.ConnectToken).SessionPresent() {
			t.Errorf("subscriber %d: no session on the broker after the run", i)
		}
		pub.Pub(t, "loadtest/t", 1, false, "after")
		select {
		case m := <-got:
			if m != "loadtest/t after" {
				t.Errorf("subscriber %d got %q", i, m)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("subscriber %d: the kept session did not deliver", i)
		}
		c.Disconnect(50)
	}
}

// TestPersistentSubscribersIgnoreOtherRuns: a session reused with the
// same --sub-id may hold messages of another topic; they count as
// foreign, not as deliveries.
func TestPersistentSubscribersIgnoreOtherRuns(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	addr := b.MQTTAddr()
	runJSON(t, "mqtt", "--addr", addr, "--msgs", "10", "--qos", "1", "--persistent", "--sub-id", "reuse-s", "--topic", "old")
	pub, err := testutil.Connect3(t, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ { // queued for the offline session
		pub.Pub(t, "old/t", 1, false, string(appendPayload(nil, time.Now().UnixNano(), 0, i, 64)))
	}
	r := runJSON(t, "mqtt", "--addr", addr, "--msgs", "10", "--qos", "1", "--persistent", "--sub-id", "reuse-s", "--topic", "new")
	if r.Delivered != 10 || r.Foreign != 5 || r.Duplicates != 0 {
		t.Fatalf("delivered %d foreign %d dup %d; want 10, 5, 0", r.Delivered, r.Foreign, r.Duplicates)
	}
}

// TestCleanSubscribersStay: without --persistent nothing is left behind
// and no ack latency is reported for QoS 0.
func TestCleanSubscribersStay(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	r := runJSON(t, "mqtt", "--addr", b.MQTTAddr(), "--subs", "2", "--msgs", "200", "--qos", "0")
	if r.Persistent || r.SubID != "" || r.Delivered != 400 || r.Acked != 0 || r.AckP50Ms != 0 {
		t.Fatalf("persistent %v sub id %q delivered %d acked %d ack p50 %v", r.Persistent, r.SubID, r.Delivered, r.Acked, r.AckP50Ms)
	}
	var errb bytes.Buffer
	if code := run([]string{"mqtt", "--sub-id", "x"}, io.Discard, &errb); code != 2 || !strings.Contains(errb.String(), "--persistent") {
		t.Fatalf("--sub-id without --persistent: exit %d, %q", code, errb.String())
	}
}

// slowAcker is a fake MQTT 3.1.1 broker on a real socket that answers
// every packet after a delay: CONNACK and SUBACK at once, PUBACK (QoS 1)
// or PUBREC then PUBCOMP (QoS 2) each after delay. It never forwards a
// publish to a subscriber. It records the most publishes it
// ever had unacknowledged.
type slowAcker struct {
	ln    net.Listener
	delay time.Duration

	mu         sync.Mutex
	open, most int
	publishes  int
}

func startSlowAcker(t *testing.T, delay time.Duration) *slowAcker {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &slowAcker{ln: ln, delay: delay}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

type reply struct {
	at    time.Time
	b     []byte
	acked bool // completes a publish
}

func (s *slowAcker) serve(c net.Conn) {
	defer c.Close()
	replies := make(chan reply, 1<<16)
	go func() {
		for r := range replies {
			time.Sleep(time.Until(r.at)) // the fake broker's processing time
			if r.acked {
				s.mu.Lock()
				s.open--
				s.mu.Unlock()
			}
			if _, err := c.Write(r.b); err != nil {
				return
			}
		}
	}()
	defer close(replies)
	rd := bufio.NewReader(c)
	for {
		typ, body, err := readPacket(rd)
		if err != nil {
			return
		}
		switch typ >> 4 {
		case 1: // CONNECT
			replies <- reply{b: []byte{0x20, 2, 0, 0}}
		case 3: // PUBLISH
			qos := typ >> 1 & 3
			if qos == 0 {
				continue
			}
			tl := int(body[0])<<8 | int(body[1])
			pid := body[2+tl : 4+tl]
			s.mu.Lock()
			s.publishes++
			s.open++
			s.most = max(s.most, s.open)
			s.mu.Unlock()
			if qos == 1 {
				replies <- reply{at: time.Now().Add(s.delay), b: []byte{0x40, 2, pid[0], pid[1]}, acked: true}
			} else {
				replies <- reply{at: time.Now().Add(s.delay), b: []byte{0x50, 2, pid[0], pid[1]}}
			}
		case 6: // PUBREL
			replies <- reply{at: time.Now().Add(s.delay), b: []byte{0x70, 2, body[0], body[1]}, acked: true}
		case 8: // SUBSCRIBE: granted, but nothing is ever forwarded
			replies <- reply{b: []byte{0x90, 3, body[0], body[1], body[len(body)-1]}}
		case 12: // PINGREQ
			replies <- reply{b: []byte{0xD0, 0}}
		case 14: // DISCONNECT
			return
		}
	}
}

func readPacket(r *bufio.Reader) (typ byte, body []byte, err error) {
	if typ, err = r.ReadByte(); err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		n += int(b&127) * mul
		mul *= 128
		if b < 128 {
			break
		}
		if i == 3 {
			return 0, nil, errors.New("bad remaining length")
		}
	}
	body = make([]byte, n)
	_, err = io.ReadFull(r, body)
	return typ, body, err
}

// TestAckLatency: the ack latency is the time from sending a publish to
// its PUBACK (QoS 1) or PUBCOMP (QoS 2), and at most --inflight publishes
// wait for theirs.
func TestAckLatency(t *testing.T) {
	const delay = 40 * time.Millisecond
	for _, tc := range []struct {
		qos  string
		min  time.Duration // the broker's delays on the way
		msgs int
	}{{"1", delay, 24}, {"2", 2 * delay, 12}} {
		t.Run("qos"+tc.qos, func(t *testing.T) {
			s := startSlowAcker(t, delay)
			r := runJSON(t, "mqtt", "--addr", s.ln.Addr().String(), "--subs", "0", "--msgs", strconv.Itoa(tc.msgs),
				"--qos", tc.qos, "--inflight", "4", "--timeout", "60s")
			if r.Acked != int64(tc.msgs) || r.Published != int64(tc.msgs) || r.PublishErrors != 0 {
				t.Fatalf("published %d (%d errors), acked %d; want %d", r.Published, r.PublishErrors, r.Acked, tc.msgs)
			}
			lo := float64(tc.min.Milliseconds())
			// The fake answers each packet delay after it arrived, in
			// order, so no acknowledgement takes much longer than min
			// (up to 5 s of scheduling noise on a loaded machine).
			if r.AckP50Ms < lo || r.AckP99Ms < r.AckP50Ms || r.AckMaxMs > lo+5000 {
				t.Errorf("ack latency p50 %v p99 %v max %v ms; want between %v ms and a little more", r.AckP50Ms, r.AckP99Ms, r.AckMaxMs, lo)
			}
			s.mu.Lock()
			most, n := s.most, s.publishes
			s.mu.Unlock()
			if n != tc.msgs || most > 4 || most < 2 {
				t.Errorf("broker saw %d publishes, at most %d unacknowledged; want %d, 2..4 (--inflight 4)", n, most, tc.msgs)
			}
		})
	}
}

// TestAckLatencyText: the text result shows the ack latency line.
func TestAckLatencyText(t *testing.T) {
	s := startSlowAcker(t, time.Millisecond)
	var out, errb bytes.Buffer
	if code := run([]string{"mqtt", "--addr", s.ln.Addr().String(), "--subs", "0", "--msgs", "5", "--qos", "1"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s %s", code, out.String(), errb.String())
	}
	if !strings.Contains(out.String(), "ack latency p50") || !strings.Contains(out.String(), "(5 acknowledgements)") {
		t.Fatalf("no ack latency line in\n%s", out.String())
	}
}

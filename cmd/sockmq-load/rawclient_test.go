package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sockmq/sockmq/bridge"
	"github.com/sockmq/sockmq/internal/app"
	"github.com/sockmq/sockmq/internal/testutil"
)

// fakeBroker accepts one connection on a real socket and hands it to the
// test, which plays the broker byte by byte.
func fakeBroker(t *testing.T) (addr string, conns chan net.Conn) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	conns = make(chan net.Conn, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			conns <- c
		}
	}()
	return ln.Addr().String(), conns
}

// acceptConnect reads the CONNECT and answers with CONNACK code.
func acceptConnect(t *testing.T, conns chan net.Conn, code byte) (net.Conn, *bufio.Reader) {
	t.Helper()
	var c net.Conn
	select {
	case c = <-conns:
	case <-time.After(10 * time.Second):
		t.Fatal("no connection")
	}
	rd := bufio.NewReader(c)
	typ, _, err := readPacket(rd)
	if err != nil || typ != 0x10 {
		t.Fatalf("expected CONNECT, got %#x %v", typ, err)
	}
	if _, err := c.Write([]byte{0x20, 2, 0, code}); err != nil {
		t.Fatal(err)
	}
	return c, rd
}

// TestRawConnRefused: a refused CONNACK is an error naming the reason.
func TestRawConnRefused(t *testing.T) {
	addr, conns := fakeBroker(t)
	errc := make(chan error, 1)
	go func() {
		_, _, err := dialRaw(rawDialOpts{addr: addr, id: "x", clean: true, keepalive: time.Minute}, rawCallbacks{})
		errc <- err
	}()
	acceptConnect(t, conns, 4)
	err := <-errc
	if err == nil || !strings.Contains(err.Error(), "return code 4 (bad user name or password)") {
		t.Fatalf("dial error %v", err)
	}
}

// TestRawConnInbound: the client acknowledges QoS 1 and 2 messages in
// order (PUBACK; PUBREC, then PUBCOMP for the PUBREL), delivers a QoS 2
// message the broker sends again before its PUBREL only once, delivers a
// new message that reuses the id after PUBREL, and answers a PUBREC to
// its own publish with PUBREL. A packet a broker must not send ends the
// connection with a protocol violation, counted as a lost connection.
func TestRawConnInbound(t *testing.T) {
	addr, conns := fakeBroker(t)
	var mu sync.Mutex
	var got []string
	var acks []string
	closed := make(chan error, 1)
	type dialed struct {
		c   *rawConn
		err error
	}
	dc := make(chan dialed, 1)
	go func() {
		c, _, err := dialRaw(rawDialOpts{addr: addr, id: "x", clean: true, keepalive: time.Minute}, rawCallbacks{
			message: func(tp, p []byte) {
				mu.Lock()
				got = append(got, string(tp)+" "+string(p))
				mu.Unlock()
			},
			ack: func(typ byte, id uint16, _ time.Time) {
				mu.Lock()
				acks = append(acks, pktNames[typ]+" "+strconv.Itoa(int(id)))
				mu.Unlock()
			},
			closed: func(err error) { closed <- err },
		})
		dc <- dialed{c, err}
	}()
	srv, rd := acceptConnect(t, conns, 0)
	d := <-dc
	if d.err != nil {
		t.Fatal(d.err)
	}
	defer d.c.Close()
	lost0 := connLost.Load()

	var out []byte
	out = appendPublish(out, "a", []byte("one"), 1, 3)
	out = appendPublish(out, "b", []byte("two"), 2, 7)
	out = appendPublish(out, "b", []byte("two"), 2, 7) // sent again before PUBREL
	out = appendAck(out, pktPubrel, 7)
	out = appendPublish(out, "c", []byte("three"), 2, 7) // a new message
	out = appendAck(out, pktPubrel, 7)
	out = appendAck(out, pktPubrec, 9) // for our publish 9
	out = appendPublish(out, "d", []byte("four"), 0, 0)
	// Split in two writes in the middle of a packet.
	if _, err := srv.Write(out[:5]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the client read the first half alone
	if _, err := srv.Write(out[5:]); err != nil {
		t.Fatal(err)
	}
	want := []string{"PUBACK 3", "PUBREC 7", "PUBREC 7", "PUBCOMP 7", "PUBREC 7", "PUBCOMP 7", "PUBREL 9"}
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i, w := range want {
		typ, body, err := readPacket(rd)
		if err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if g := pktNames[typ>>4] + " " + strconv.Itoa(int(body[0])<<8|int(body[1])); g != w {
			t.Fatalf("reply %d is %s (first byte %#x), want %s", i, g, typ, w)
		}
		if typ>>4 == pktPubrel && typ != 0x62 {
			t.Fatalf("PUBREL first byte %#x", typ)
		}
	}
	mu.Lock()
	if strings.Join(got, ",") != "a one,b two,c three,d four" || strings.Join(acks, ",") != "PUBREC 9" {
		t.Errorf("delivered %q, acks %q", got, acks)
	}
	mu.Unlock()

	// A CONNECT from the broker is a protocol violation.
	if _, err := srv.Write(appendConnect(nil, "srv", true, "", "", 0)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-closed:
		if !errors.Is(err, errProtocol) || !strings.Contains(err.Error(), "unexpected CONNECT") {
			t.Fatalf("closed with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client did not end the connection")
	}
	if connLost.Load() != lost0+1 {
		t.Errorf("lost connections %d, want %d", connLost.Load(), lost0+1)
	}
}

// checkExact fails unless every delivery arrived exactly once.
func checkExact(t *testing.T, r result, pubs, subs, msgs int) {
	t.Helper()
	want := int64(pubs * subs * msgs)
	if r.Published != int64(pubs*msgs) || r.PublishErrors != 0 || r.Expected != want || r.Delivered != want ||
		r.Lost != 0 || r.Duplicates != 0 || r.Foreign != 0 || r.NeverSent != 0 || r.ConnLost != 0 {
		t.Fatalf("published %d (%d errors), expected %d, delivered %d, lost %d, duplicates %d, foreign %d, never sent %d, connections lost %d; want %d delivered exactly once",
			r.Published, r.PublishErrors, r.Expected, r.Delivered, r.Lost, r.Duplicates, r.Foreign, r.NeverSent, r.ConnLost, want)
	}
	if r.QoS > 0 && r.Acked != int64(pubs*msgs) {
		t.Fatalf("acked %d of %d QoS %d publishes", r.Acked, pubs*msgs, r.QoS)
	}
}

// runClients runs the mqtt command against addr at QoS 0, 1 and 2 and
// checks that every message arrived exactly once.
func runClients(t *testing.T, addr string, clients []string, extra ...string) {
	const pubs, subs, msgs = 2, 3, 400
	for _, client := range clients {
		for _, qos := range []string{"0", "1", "2"} {
			t.Run(client+"/qos"+qos, func(t *testing.T) {
				args := append([]string{"mqtt", "--client", client, "--addr", addr, "--pubs", strconv.Itoa(pubs),
					"--subs", strconv.Itoa(subs), "--msgs", strconv.Itoa(msgs), "--qos", qos, "--timeout", "60s"}, extra...)
				r := runJSON(t, args...)
				if r.Client != client {
					t.Errorf("result says client %q", r.Client)
				}
				checkExact(t, r, pubs, subs, msgs)
			})
		}
	}
}

// TestRawClientSockmq: the raw client against sockmq, QoS 0/1/2, every
// message exactly once; paho still works.
func TestRawClientSockmq(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	runClients(t, b.MQTTAddr(), []string{clientRaw, clientPaho})
	// A paced run with per-publisher topics and a wildcard filter.
	r := runJSON(t, "mqtt", "--addr", b.MQTTAddr(), "--pubs", "3", "--subs", "2", "--qos", "1", "--rate", "2000",
		"--msgs", "300", "--window", "0", "--topic-fanout", "per-pub", "--timeout", "60s")
	checkExact(t, r, 3, 2, 300)
	if r.LatFrom != "scheduled" || r.Scheduled != 900 || r.LatP50Ms <= 0 || r.ClientCPUSecs <= 0 {
		t.Errorf("lat from %q, scheduled %d, p50 %v ms, client CPU %v s", r.LatFrom, r.Scheduled, r.LatP50Ms, r.ClientCPUSecs)
	}
}

// TestRawClientMosquitto: the raw client against Debian's mosquitto.
// mosquitto silently drops QoS 2 publishes beyond max_inflight_messages
// (20) that a client has in flight, so the publishers keep 20 at most,
// and queues are unlimited so that fan-out does not drop either.
func TestRawClientMosquitto(t *testing.T) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto not found but CI is set: scripts/test-deps.sh installs it")
		}
		t.Skip("mosquitto not on PATH: install it (scripts/test-deps.sh, or apt-get install mosquitto) to run the raw client against it")
	}
	addr := testutil.FreeAddr(t)
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	cfg := fmt.Sprintf("listener %s 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\nlog_type error\n", port)
	if err := os.WriteFile(conf, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", conf)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	testutil.WaitFor(t, 10*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	}, "mosquitto listening on "+addr)
	runClients(t, addr, []string{clientRaw}, "--inflight", "20")
}

// TestSCFromMQTT: an MQTT publisher (raw client) feeds SocketCluster
// subscribers through sockmq's bridge (pinging every second): every
// message arrives exactly once through the reused receive buffer, QoS 0
// and 1.
func TestSCFromMQTT(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	bcfg := bridge.Defaults()
	bcfg.PingInterval = time.Second
	h, err := bridge.New(bcfg, bridge.Options{Broker: app.BridgeBroker(b), DataDir: t.TempDir()}, testutil.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = h.Shutdown(ctx)
	})
	for _, p := range h.Paths() {
		b.Handle(p, h)
	}
	url := "ws://" + b.HTTPAddr() + "/socketcluster/"
	for _, qos := range []string{"0", "1"} {
		r := runJSON(t, "sc", "--url", url, "--mqtt-pub", b.MQTTAddr(), "--qos", qos, "--pubs", "2", "--subs", "3",
			"--msgs", "300", "--size", "200", "--rate", "500", "--window", "0", "--timeout", "60s")
		checkExact(t, r, 2, 3, 300)
		if r.Client != clientRaw {
			t.Errorf("client %q", r.Client)
		}
	}
	// SC publishers too (no MQTT client).
	r := runJSON(t, "sc", "--url", url, "--pubs", "1", "--subs", "2", "--msgs", "500", "--timeout", "60s")
	checkExact(t, r, 1, 2, 500)
	if r.Client != "" {
		t.Errorf("client %q without MQTT", r.Client)
	}
}

// TestRawConnKeepalive: the client sends PINGREQ every 3/4 keepalive and
// ends the connection, as lost, when the broker stops answering.
func TestRawConnKeepalive(t *testing.T) {
	addr, conns := fakeBroker(t)
	closed := make(chan error, 1)
	dc := make(chan error, 1)
	var c *rawConn
	go func() {
		var err error
		c, _, err = dialRaw(rawDialOpts{addr: addr, id: "x", clean: true, keepalive: time.Second},
			rawCallbacks{closed: func(err error) { closed <- err }})
		dc <- err
	}()
	srv, rd := acceptConnect(t, conns, 0)
	if err := <-dc; err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lost0 := connLost.Load()
	_ = srv.SetReadDeadline(time.Now().Add(10 * time.Second))
	typ, _, err := readPacket(rd) // answered
	if err != nil || typ != pktPingreq<<4 {
		t.Fatalf("expected PINGREQ, got %#x %v", typ, err)
	}
	if _, err := srv.Write([]byte{pktPingresp << 4, 0}); err != nil {
		t.Fatal(err)
	}
	typ, _, err = readPacket(rd) // not answered
	if err != nil || typ != pktPingreq<<4 {
		t.Fatalf("expected a second PINGREQ, got %#x %v", typ, err)
	}
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "no PINGRESP") {
			t.Fatalf("closed with %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the client kept a silent connection")
	}
	if connLost.Load() != lost0+1 {
		t.Errorf("lost connections %d, want %d", connLost.Load(), lost0+1)
	}
}

// TestWindow: publishers stay at most --window messages ahead of the
// subscribers, and when deliveries stop (a broker that forwards nothing)
// the missing ones are written off after 500 ms of no progress, counted
// as window stalls, and the run ends.
func TestWindow(t *testing.T) {
	b := testutil.StartBroker(t, testutil.BrokerConfig(t), nil)
	for _, client := range []string{clientRaw, clientPaho} {
		r := runJSON(t, "mqtt", "--client", client, "--addr", b.MQTTAddr(), "--pubs", "2", "--subs", "3", "--msgs", "1500",
			"--window", "20", "--qos", "1", "--timeout", "60s")
		checkExact(t, r, 2, 3, 1500)
		if r.PendingAtPubEnd > 21*3 || r.WindowStalls != 0 {
			t.Errorf("%s: %d deliveries pending when publishing ended (window 20 x 3 subscribers), %d stalls", client, r.PendingAtPubEnd, r.WindowStalls)
		}
	}
	s := startSlowAcker(t, time.Millisecond)
	start := time.Now()
	r := runJSON(t, "mqtt", "--addr", s.ln.Addr().String(), "--subs", "1", "--msgs", "30", "--window", "10",
		"--qos", "0", "--drain", "100ms", "--timeout", "60s")
	if r.Published != 30 || r.Delivered != 0 || r.Lost != 30 || r.WindowStalls < 2 || r.WindowStalls > 3 {
		t.Fatalf("published %d, delivered %d, lost %d, window stalls %d; want 30, 0, 30, 2..3", r.Published, r.Delivered, r.Lost, r.WindowStalls)
	}
	if took := time.Since(start); took < time.Second {
		t.Errorf("the run took %v: stalls must wait 500 ms for progress", took)
	}
}

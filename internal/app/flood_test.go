package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/sockmq/sockmq/internal/scproto"
	"github.com/sockmq/sockmq/internal/testutil"
)

// Flood tests: one bridge socket tries to keep the broker busy or pin its
// memory, while a healthy MQTT client keeps measuring its round trip. They
// run the separately built binary (without -race), print what they
// measured, and fail when the abuse costs more than the limits allow or the
// healthy client loses service.

// floodACL: anonymous clients (the attacker and the healthy client) may
// read mine/#, use healthy/# and leave wills under wills/#; user "pub"
// may publish anywhere (retained data); user "viewer" may read presence.
const floodACL = "topic read mine/#\ntopic readwrite healthy/#\ntopic readwrite wills/#\n" +
	"user pub\ntopic readwrite #\n" +
	"user viewer\ntopic read $presence/#\n"

// floodWait is how long a flood test waits for the broker to answer again,
// so that a run on code without the limits still reports a number.
const floodWait = 60 * time.Second

func startFloodProc(t *testing.T, extraYAML string) *testutil.Proc {
	t.Helper()
	return testutil.StartProc(t, testutil.ProcOptions{Config: func(mqttAddr, httpAddr, dataDir string) string {
		acl := filepath.Join(filepath.Dir(dataDir), "acl")
		if err := os.WriteFile(acl, []byte(floodACL), 0o644); err != nil {
			t.Fatal(err)
		}
		return testutil.BaseConfig(mqttAddr, httpAddr, dataDir) +
			fmt.Sprintf("auth: {acl_file: %q, allow_anonymous: true}\n", acl) + extraYAML
	}})
}

// cpuTime returns the user+system CPU time the process has used.
func cpuTime(t *testing.T, p *testutil.Proc) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name (which ends with ')'): utime is the
	// 12th, stime the 13th, in clock ticks of 10ms.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// answerAfter sends frame, then an invoke, and returns how long the invoke
// took to be answered (with data or an error), or false after floodWait.
func answerAfter(c *testutil.SCClient, frame string) (time.Duration, bool) {
	start := time.Now()
	c.Send(frame)
	cid := c.Call("getSessionId", nil)
	_, ok := c.TryNext(func(p scproto.Packet) bool { return p.HasRID && p.RID == cid }, floodWait)
	return time.Since(start), ok
}

func scSocket(t *testing.T, p *testutil.Proc) *testutil.SCClient {
	t.Helper()
	c := testutil.DialSC(t, testutil.SCURL(p.HTTP), nil)
	c.Handshake(nil)
	return c
}

// An 18 KB frame of subscribe/unsubscribe pairs on # while 20,000 retained
// messages exist that the socket may not read. Each pair used to make the
// broker subscribe (mochi walks and copies every matching retained message)
// and the bridge look the retained messages up again: minutes of CPU.
func TestFloodSubscribeUnsubscribeFrame(t *testing.T) {
	p := startFloodProc(t, "")
	pub, _, err := testutil.Connect5(t, testutil.Dial(t, p.MQTT), &paho.Connect{ClientID: "pub", CleanStart: true, Username: "pub", UsernameFlag: true})
	if err != nil {
		t.Fatal(err)
	}
	const retained = 20000
	for i := range retained {
		if _, err := pub.Publish(context.Background(), &paho.Publish{Topic: fmt.Sprintf("data/%d/x", i), Retain: true, Payload: []byte("21.5")}); err != nil {
			t.Fatal(err)
		}
	}
	pub.Pub(t, "data/barrier", 1, false, "x") // after the QoS 0 ones, in order
	h := testutil.StartHealthy(t, p.MQTT, 0)
	c := scSocket(t, p)

	var b strings.Builder
	b.WriteString("[")
	pairs := 0
	for cid := 10; b.Len() < 18<<10; cid++ {
		fmt.Fprintf(&b, `{"event":"#subscribe","data":{"channel":"#"},"cid":%d},{"event":"#unsubscribe","data":"#"},`, cid)
		pairs++
	}
	b.WriteString(`{"event":"#unsubscribe","data":"#"}]`)
	rss0, cpu0 := p.RSS(t), cpuTime(t, p)
	busy, ok := answerAfter(c, b.String())
	rss1, cpu1 := p.RSS(t), cpuTime(t, p)
	busyText := busy.Round(time.Millisecond).String()
	if !ok {
		busyText = "more than " + floodWait.String()
	}
	t.Logf("%d KB frame of %d subscribe/unsubscribe pairs on #, %d retained messages the socket may not read: answered after %s, broker CPU %v; RSS %s -> %s",
		b.Len()>>10, pairs, retained, busyText, (cpu1 - cpu0), mib(rss0), mib(rss1))
	t.Log(h.Check(t))
	if !ok || busy > testutil.LossOfService {
		t.Fatalf("the socket's next request was answered after %s (limit %v)", busyText, testutil.LossOfService)
	}
}

// connectMany opens n idle MQTT 3.1.1 connections with raw CONNECT packets.
func connectMany(t *testing.T, addr string, n int) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				id := fmt.Sprintf("idle-%05d", i)
				conn, err := net.Dial("tcp", addr)
				if err != nil {
					errs <- err
					return
				}
				t.Cleanup(func() { conn.Close() })
				// CONNECT: protocol MQTT 4, clean session, keepalive 0.
				body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 2, 0, 0, 0, byte(len(id))}, id...)
				pkt := append([]byte{0x10, byte(len(body))}, body...)
				_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
				var ack [4]byte
				if _, err := conn.Write(pkt); err != nil {
					errs <- err
					return
				}
				if _, err := conn.Read(ack[:]); err != nil || ack[0] != 0x20 || ack[3] != 0 {
					errs <- fmt.Errorf("CONNACK for %s: %x %v", id, ack, err)
					return
				}
				_ = conn.SetDeadline(time.Time{})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// 25,000 presence invokes in one frame, with 2,000 sessions connected. Each
// call used to copy, sort and ACL-check the whole list (~1.6 ms).
func TestFloodPresenceInvokes(t *testing.T) {
	p := startFloodProc(t, "")
	const sessions = 2000
	connectMany(t, p.MQTT, sessions)
	viewer := scSocket(t, p)
	viewer.Login("viewer", "any")
	testutil.WaitFor(t, 10*time.Second, func() bool {
		r := viewer.Invoke("presence", nil)
		return r.Error == nil && strings.Count(string(r.Data), `"protocol"`) >= sessions
	}, "2000 sessions in presence")
	h := testutil.StartHealthy(t, p.MQTT, 0)

	// A viewer who may read every session: how fast are calls answered?
	// (Few at once: each answer is ~290 KB, bridge.max_queue_bytes 4 MiB.)
	viewer = scSocket(t, p)
	viewer.Login("viewer", "any")
	const calls = 10
	var b strings.Builder
	b.WriteString("[")
	for i := range calls {
		fmt.Fprintf(&b, `{"event":"presence","cid":%d},`, 1000+i)
	}
	b.WriteString(`{"event":"#unsubscribe","data":"none"}]`)
	start := time.Now()
	viewer.Send(b.String())
	for i := range calls {
		viewer.Next(func(p scproto.Packet) bool { return p.RID == int64(1000+i) }, "presence answer")
	}
	perSecond := float64(calls) / time.Since(start).Seconds()

	// An anonymous socket, who may read no session, floods.
	c := scSocket(t, p)
	b.Reset()
	b.WriteString("[")
	const flood = 25000
	for i := range flood {
		fmt.Fprintf(&b, `{"event":"presence","cid":%d},`, 10+i)
	}
	b.WriteString(`{"event":"#unsubscribe","data":"none"}]`)
	rss0, cpu0 := p.RSS(t), cpuTime(t, p)
	busy, ok := answerAfter(c, b.String())
	rss1, cpu1 := p.RSS(t), cpuTime(t, p)
	busyText := busy.Round(time.Millisecond).String()
	if !ok {
		busyText = "more than " + floodWait.String()
	}
	refused := c.Count(func(p scproto.Packet) bool { return p.HasRID && testutil.ErrName(p) == "RateLimitError" })
	t.Logf("presence with %d sessions: %.0f calls/s answered to a viewer who may read them all (%d KB each)", sessions, perSecond, len(viewer.Packets()[len(viewer.Packets())-1].Data)>>10)
	t.Logf("%d presence invokes in one %d KB frame: answered after %s (%d refused with RateLimitError), broker CPU %v; RSS %s -> %s",
		flood, b.Len()>>10, busyText, refused, cpu1-cpu0, mib(rss0), mib(rss1))
	t.Log(h.Check(t))
	if !ok || busy > testutil.LossOfService {
		t.Fatalf("the socket's next request was answered after %s (limit %v)", busyText, testutil.LossOfService)
	}
}

// Sockets leave ever more 60 KiB wills: the bytes one socket can pin are
// capped (lwt.max_wills_per_socket, lwt.max_bytes_per_user), and so are
// the bytes of all sockets together (lwt.max_bytes, 8 MiB here).
func TestFloodWillsPinMemory(t *testing.T) {
	p := startFloodProc(t, "lwt: {max_bytes: 8388608}\n")
	h := testutil.StartHealthy(t, p.MQTT, 10*time.Millisecond)
	data := testutil.Quote(strings.Repeat("w", 60<<10))
	rss0 := p.RSS(t)
	const sockets, tries = 12, 64
	var pinned, first int64
	refusals := map[string]int{}
	for s := range sockets {
		c := scSocket(t, p)
		for i := range tries {
			r := c.Invoke("setWill", fmt.Sprintf(`{"channel":"wills/%d/%d","data":%s,"delaySeconds":3600}`, s, i, data))
			if r.Error != nil {
				refusals[testutil.ErrName(r)+": "+errMessage(r)]++
				break
			}
			pinned += int64(len(data))
		}
		if s == 0 {
			first = pinned
		}
	}
	rss1 := p.RSS(t)
	t.Logf("one socket pinned %s with 60 KiB wills; %d sockets pinned %s in total; refusals %v; RSS %s -> %s",
		mib(first), sockets, mib(pinned), refusals, mib(rss0), mib(rss1))
	t.Log(h.Check(t))
	if first > 1<<20 || pinned > 8<<20 {
		t.Fatalf("wills were not capped: %s pinned by one socket, %s by %d", mib(first), mib(pinned), sockets)
	}
	for msg := range refusals {
		if !strings.HasPrefix(msg, "LimitExceededError") {
			t.Errorf("refused with %q, want LimitExceededError", msg)
		}
	}
}

// errMessage returns the message of an error response.
func errMessage(p scproto.Packet) string {
	var e struct {
		Message string `json:"message"`
	}
	_ = json.Unmarshal(p.Error, &e)
	return e.Message
}

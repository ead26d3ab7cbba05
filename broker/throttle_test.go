package broker

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// publishPacket is an MQTT 3.1.1 PUBLISH with QoS 1 and packet id pid.
func publishPacket(topic string, pid uint16, payload []byte) []byte {
	body := appendMQTTString(nil, topic)
	body = append(body, byte(pid>>8), byte(pid))
	body = append(body, payload...)
	return append(appendRemaining([]byte{0x32}, len(body)), body...)
}

// ackingSub is a raw QoS 1 subscriber that reads everything it is sent and
// acknowledges it only while acking is set (what it did not acknowledge
// is acknowledged when acking is turned on).
type ackingSub struct {
	rc      *rawClient
	acking  atomic.Bool
	got     atomic.Int64
	mu      sync.Mutex
	pending []uint16
	done    chan struct{}
}

func newAckingSub(t *testing.T, s *Server, id, filter string, acking bool) *ackingSub {
	t.Helper()
	rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", true)
	if err != nil || code != 0 {
		t.Fatalf("connect %s: %v (code %d)", id, err, code)
	}
	if err := rc.subscribe(filter, 1); err != nil {
		t.Fatal(err)
	}
	a := &ackingSub{rc: rc, done: make(chan struct{})}
	a.acking.Store(acking)
	go a.read()
	t.Cleanup(func() {
		a.rc.c.Close()
		<-a.done
	})
	return a
}

func (a *ackingSub) read() {
	defer close(a.done)
	for {
		h, body, err := readPacket(a.rc.r)
		if err != nil {
			return
		}
		if h>>4 != 3 || len(body) < 2 {
			continue
		}
		tl := int(body[0])<<8 | int(body[1])
		if len(body) < 4+tl {
			return
		}
		a.got.Add(1)
		a.mu.Lock()
		a.pending = append(a.pending, uint16(body[2+tl])<<8|uint16(body[3+tl]))
		a.mu.Unlock()
		if a.acking.Load() {
			a.flushAcks()
		}
	}
}

// flushAcks acknowledges everything received so far.
func (a *ackingSub) flushAcks() {
	a.mu.Lock()
	p := a.pending
	a.pending = nil
	a.mu.Unlock()
	var out []byte
	for _, id := range p {
		out = append(out, 0x40, 2, byte(id>>8), byte(id))
	}
	if len(out) > 0 {
		_, _ = a.rc.c.Write(out)
	}
}

// startAcking acknowledges what was received and everything from now on.
func (a *ackingSub) startAcking() {
	a.acking.Store(true)
	a.flushAcks()
}

// pipelinedPublisher writes n QoS 1 publishes of size bytes as fast as the
// socket takes them (and ahead allows: nil or true) and counts the PUBACKs
// it gets.
type pipelinedPublisher struct {
	c      net.Conn
	acks   atomic.Int64
	wrote  atomic.Int64
	werr   chan error
	closed chan struct{}
}

func startPublisher(t *testing.T, s *Server, id, topic string, n, size int, ahead func(sent int) bool) *pipelinedPublisher {
	t.Helper()
	rc, code, err := dialMQTT(s.MQTTAddr(), id, "", "", true)
	if err != nil || code != 0 {
		t.Fatalf("connect %s: %v (code %d)", id, err, code)
	}
	return runPublisher(t, rc, topic, n, size, ahead)
}

// runPublisher starts publishing on a connected client.
func runPublisher(t *testing.T, rc *rawClient, topic string, n, size int, ahead func(sent int) bool) *pipelinedPublisher {
	p := &pipelinedPublisher{c: rc.c, werr: make(chan error, 1), closed: make(chan struct{})}
	go func() {
		defer close(p.closed)
		r := bufio.NewReader(rc.c)
		for {
			h, _, err := readPacket(r)
			if err != nil {
				return
			}
			if h == 0x40 {
				p.acks.Add(1)
			}
		}
	}()
	go func() {
		payload := make([]byte, size)
		for i := range n {
			for ahead != nil && !ahead(i) {
				time.Sleep(time.Millisecond)
			}
			if _, err := rc.c.Write(publishPacket(topic, uint16(i%65535+1), payload)); err != nil {
				p.werr <- err
				return
			}
			p.wrote.Add(1)
		}
		p.werr <- nil
	}()
	t.Cleanup(func() {
		rc.c.Close()
		<-p.closed
	})
	return p
}

// waitFor polls cond every millisecond until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(time.Millisecond)
	}
}

func throttleBroker(t *testing.T, limit int64, maxInflight uint16) *Server {
	return benchBroker(t, nil, func(c *Config) {
		c.Limits.ThrottleQueued = limit
		if maxInflight > 0 {
			c.Limits.MaxInflight = maxInflight
		}
	})
}

// When subscribers fall behind together (their backlogs reach
// limits.throttle_queued), the broker stops reading the publisher instead
// of queueing on; once they catch up it reads on, and nothing is dropped.
func TestThrottlePausesPublisherUntilBacklogDrains(t *testing.T) {
	const limit, n, nsubs = 1000, 3000, 4
	s := throttleBroker(t, limit, 0)
	s.throttle.stallAfter.Store(int64(time.Minute)) // the subscribers are slow, not stuck
	subs := make([]*ackingSub, nsubs)
	for i := range subs {
		subs[i] = newAckingSub(t, s, "sub"+strconv.Itoa(i), "th/x", false)
	}
	pub := startPublisher(t, s, "pub", "th/x", n, 1024, nil)

	waitFor(t, 10*time.Second, "the publisher to be paused", func() bool { return s.throttle.pauses.Load() > 0 })
	if in := s.metrics.messagesIn.Load(); in >= n {
		t.Fatalf("the broker read all %d publishes although its subscribers were %d messages behind (limit %d)", in, s.throttle.backlog.Load(), limit)
	}
	if got := s.throttle.backlog.Load(); got < limit || !s.throttle.on.Load() {
		t.Fatalf("paused with a backlog of %d (engaged %v), want >= %d", got, s.throttle.on.Load(), limit)
	}
	if c := s.limits.Count(limitThrottle); c < 1 {
		t.Fatalf("sockmq_limit_refusals_total{limit=%q} = %v, want >= 1", limitThrottle, c)
	}
	inWhilePaused := s.metrics.messagesIn.Load()

	for _, sub := range subs {
		sub.startAcking()
	}
	waitFor(t, 30*time.Second, "every PUBACK", func() bool { return pub.acks.Load() == n })
	for i, sub := range subs {
		waitFor(t, 10*time.Second, "subscriber "+strconv.Itoa(i)+" to get every message", func() bool { return sub.got.Load() == n })
	}
	if err := <-pub.werr; err != nil {
		t.Fatal(err)
	}
	if d := s.metrics.inflightDropped.Load(); d != 0 {
		t.Fatalf("%d messages dropped; the throttle should have kept the queues short", d)
	}
	waitFor(t, 5*time.Second, "the backlog to empty", func() bool { return s.throttle.backlog.Load() == 0 && !s.throttle.on.Load() })
	t.Logf("read %d of %d publishes before the publisher was paused; engaged %d times, %d pauses",
		inWhilePaused, n, s.throttle.engaged.Load(), s.throttle.pauses.Load())
}

// One subscriber that never acknowledges is bounded by its own queue
// (limits.max_inflight, the excess dropped), and does not slow the
// publisher down nor the healthy subscriber.
func TestThrottleIgnoresOneSlowSubscriber(t *testing.T) {
	const limit, n = 1000, 2000
	s := throttleBroker(t, limit, 500)
	slow := newAckingSub(t, s, "slow", "th/y", false)
	healthy := newAckingSub(t, s, "healthy", "th/y", true)
	// The publisher keeps within 200 messages of the healthy subscriber,
	// which therefore stays within its own limits.max_inflight.
	pub := startPublisher(t, s, "pub", "th/y", n, 256, func(sent int) bool { return int64(sent)-healthy.got.Load() < 200 })
	waitFor(t, 30*time.Second, "every PUBACK", func() bool { return pub.acks.Load() == n })
	waitFor(t, 10*time.Second, "the healthy subscriber to get every message", func() bool { return healthy.got.Load() == n })
	if e, p := s.throttle.engaged.Load(), s.throttle.pauses.Load(); e != 0 || p != 0 {
		t.Fatalf("throttle engaged %d times (%d pauses) for one slow subscriber", e, p)
	}
	if d := s.metrics.inflightDropped.Load(); d != n-500 {
		t.Fatalf("%d messages dropped for the slow subscriber, want %d (all beyond limits.max_inflight)", d, n-500)
	}
	waitFor(t, 10*time.Second, "the slow subscriber to read its send window", func() bool { return slow.got.Load() >= defaultSendWindow })
	if got := slow.got.Load(); got != defaultSendWindow {
		t.Fatalf("slow subscriber got %d messages, want its send window %d", got, defaultSendWindow)
	}
}

// Subscribers that acknowledge nothing at all are stuck, not slow: once
// they have been silent for the stall time they stop counting, the
// throttle releases, and the publisher goes on (their own queues bound
// them).
func TestThrottleReleasesWhenSubscribersStall(t *testing.T) {
	const limit, n, nsubs = 1000, 3000, 4
	s := throttleBroker(t, limit, 0)
	s.throttle.stallAfter.Store(int64(300 * time.Millisecond))
	for i := range nsubs {
		newAckingSub(t, s, "stuck"+strconv.Itoa(i), "th/z", false)
	}
	pub := startPublisher(t, s, "pub", "th/z", n, 1024, nil)
	waitFor(t, 10*time.Second, "the throttle to engage", func() bool { return s.throttle.engaged.Load() > 0 })
	waitFor(t, 30*time.Second, "every PUBACK", func() bool { return pub.acks.Load() == n })
	if st := s.throttle.stalls.Load(); st < nsubs {
		t.Fatalf("%d sessions stalled, want %d", st, nsubs)
	}
	if s.throttle.on.Load() || s.throttle.backlog.Load() != 0 {
		t.Fatalf("throttle engaged %v with backlog %d after every subscriber stalled", s.throttle.on.Load(), s.throttle.backlog.Load())
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key
// into dir.
func writeTestCert(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// A publisher served by a reader goroutine (MQTT over TLS; also WebSocket
// and cluster nodes) is held by the throttle the same way.
func TestThrottlePausesGoroutineServedPublisher(t *testing.T) {
	const limit, n, nsubs = 1000, 3000, 4
	cert, key := writeTestCert(t, t.TempDir())
	s := benchBroker(t, nil, func(c *Config) {
		c.Limits.ThrottleQueued = limit
		c.Listeners.MQTTTLS = TLSListener{Address: "127.0.0.1:0", CertFile: cert, KeyFile: key}
	})
	s.throttle.stallAfter.Store(int64(time.Minute))
	subs := make([]*ackingSub, nsubs)
	for i := range subs {
		subs[i] = newAckingSub(t, s, "tsub"+strconv.Itoa(i), "th/tls", false)
	}
	tc, err := tls.Dial("tcp", s.TLSAddr(), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // the test's own certificate
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawClient{c: tc, r: bufio.NewReader(tc)}
	if _, err := tc.Write(connectPacket("tlspub", "", "", true)); err != nil {
		t.Fatal(err)
	}
	if h, body, err := readPacket(rc.r); err != nil || h != 0x20 || len(body) != 2 || body[1] != 0 {
		t.Fatalf("CONNACK: %x %x %v", h, body, err)
	}
	pub := runPublisher(t, rc, "th/tls", n, 1024, nil)

	waitFor(t, 10*time.Second, "the publisher to be paused", func() bool { return s.throttle.pauses.Load() > 0 })
	if in := s.metrics.messagesIn.Load(); in >= n {
		t.Fatalf("the broker read all %d publishes although its subscribers were %d messages behind (limit %d)", in, s.throttle.backlog.Load(), limit)
	}
	for _, sub := range subs {
		sub.startAcking()
	}
	waitFor(t, 30*time.Second, "every PUBACK", func() bool { return pub.acks.Load() == n })
	for i, sub := range subs {
		waitFor(t, 10*time.Second, "subscriber "+strconv.Itoa(i)+" to get every message", func() bool { return sub.got.Load() == n })
	}
	if d := s.metrics.inflightDropped.Load(); d != 0 {
		t.Fatalf("%d messages dropped", d)
	}
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// pubsubOpts are the flags of the mqtt and sc commands.
type pubsubOpts struct {
	kind       string // mqtt or sc
	addr       string // MQTT broker host:port (mqtt)
	url        string // SocketCluster URL (sc)
	mqttPub    string // sc: MQTT broker that the publishers use instead of SC
	pubs, subs int
	msgs       int
	qos        int
	size       int
	fanout     string
	duration   time.Duration
	timeout    time.Duration
	drain      time.Duration
	rate       float64
	window     int
	inflight   int
	user, pass string
	invoke     bool
	prefix     string
	topicBase  string
	jsonOut    bool
	label      string
	persistent bool   // mqtt: subscribers keep persistent sessions
	subID      string // mqtt: client id prefix of persistent subscribers
	client     string // MQTT client library: raw or paho
}

// publisher sends payloads to one topic or channel.
type publisher interface {
	// Publish sends one message; the payload must not be reused.
	Publish(payload []byte) error
	// Flush waits until every message is acknowledged (QoS>0, invokes) or
	// written.
	Flush(timeout time.Duration) error
	Close()
}

// subscriber is a connected, subscribed client; messages go to the
// callback given when it was created.
type subscriber interface{ Close() }

// transport creates the clients of one run.
type transport interface {
	newSub(ctx context.Context, i int, filter string, topics []string, onMsg func([]byte)) (subscriber, error)
	newPub(ctx context.Context, i int, topic string) (publisher, error)
	target() string
}

// result is what a run measured. Rates are messages per second.
type result struct {
	Label         string  `json:"label,omitempty"`
	Kind          string  `json:"kind"`
	Client        string  `json:"client,omitempty"` // MQTT client library (raw, paho) when MQTT is used
	Target        string  `json:"target"`
	Pubs          int     `json:"pubs"`
	Subs          int     `json:"subs"`
	QoS           int     `json:"qos"`
	Size          int     `json:"size"`
	Fanout        string  `json:"topic_fanout"`
	Window        int     `json:"window"`
	Rate          float64 `json:"rate_per_pub"`
	Published     int64   `json:"published"`
	PublishErrors int64   `json:"publish_errors"`
	PublishSecs   float64 `json:"publish_secs"`
	PublishRate   float64 `json:"publish_rate"`
	Expected      int64   `json:"expected"`
	Delivered     int64   `json:"delivered"`
	Duplicates    int64   `json:"duplicates"`
	Lost          int64   `json:"lost"`
	Foreign       int64   `json:"foreign"`
	DeliverSecs   float64 `json:"deliver_secs"`
	DeliverRate   float64 `json:"deliver_rate"`
	LatP50Ms      float64 `json:"lat_p50_ms"`
	LatP90Ms      float64 `json:"lat_p90_ms"`
	LatP99Ms      float64 `json:"lat_p99_ms"`
	LatMaxMs      float64 `json:"lat_max_ms"`
	LatMeanMs     float64 `json:"lat_mean_ms"`
	Persistent    bool    `json:"persistent_subs,omitempty"`
	SubID         string  `json:"sub_id,omitempty"`
	Acked         int64   `json:"acked"` // QoS>0 publishes whose acknowledgement was timed
	AckP50Ms      float64 `json:"ack_p50_ms"`
	AckP90Ms      float64 `json:"ack_p90_ms"`
	AckP99Ms      float64 `json:"ack_p99_ms"`
	AckMaxMs      float64 `json:"ack_max_ms"`
	AckMeanMs     float64 `json:"ack_mean_ms"`
	WindowStalls  int64   `json:"window_stalls"`
	ConnLost      int64   `json:"conn_lost"`
	ClientCPUSecs float64 `json:"client_cpu_secs"`

	// With --rate every message has a scheduled send time (the publisher's
	// start + seq / rate) and its payload carries that time, not the time
	// it was actually written: a publisher that falls behind (a blocked
	// socket, a full window, a busy core) adds its lateness to the
	// latencies instead of hiding it (no coordinated omission). LatFrom
	// says which ("scheduled" or "sent").
	LatFrom string `json:"lat_from"`
	// Scheduled is how many messages were due by the time publishing
	// stopped (with --rate: those whose scheduled time had come; without:
	// --msgs per publisher, if set); NeverSent is how many of them were
	// never sent.
	Scheduled int64 `json:"scheduled"`
	NeverSent int64 `json:"never_sent"`
	// NotReceived counts deliveries (message x subscriber) sent without an
	// error but not received when the run ended (the same as Lost);
	// PendingAtPubEnd is how many of them were still on their way when
	// the last publish was sent (queued in the broker or in sockets).
	NotReceived     int64 `json:"not_received"`
	PendingAtPubEnd int64 `json:"pending_at_pub_end"`
	// SendLag: how late publishes were written after their scheduled time
	// (with --rate).
	SendLagP50Ms float64 `json:"send_lag_p50_ms"`
	SendLagP99Ms float64 `json:"send_lag_p99_ms"`
	SendLagMaxMs float64 `json:"send_lag_max_ms"`
	// The load tool's own CPU while publishing and draining: ClientCores
	// is the number of CPUs it may run on (its affinity mask, e.g. 1 under
	// taskset -c 1) and ClientCoreUtil its CPU time / (wall time x
	// ClientCores). ToolLimited is set when that is at least 0.95: the
	// tool, not the server, was the limit.
	ClientCores    int     `json:"client_cores"`
	ClientCoreUtil float64 `json:"client_core_util"`
	ToolLimited    bool    `json:"tool_limited"`
	TimedOut       bool    `json:"timed_out"`
	Error          string  `json:"error,omitempty"`
}

func pubsubFlags(kind string, stderr io.Writer) (*flag.FlagSet, *pubsubOpts) {
	o := &pubsubOpts{kind: kind}
	fs := flag.NewFlagSet(kind, flag.ContinueOnError)
	fs.SetOutput(stderr)
	if kind == "mqtt" {
		fs.StringVar(&o.addr, "addr", "127.0.0.1:1883", "MQTT broker host:port (loopback only)")
		fs.IntVar(&o.qos, "qos", 0, "QoS of publishes and subscriptions: 0, 1 or 2")
		fs.StringVar(&o.user, "user", "", "MQTT user name")
		fs.StringVar(&o.pass, "pass", "", "MQTT password")
		fs.BoolVar(&o.persistent, "persistent", false, "subscribers use persistent sessions (clean_session=false, client ids <sub-id>0, <sub-id>1, ...) and keep them when the run ends")
		fs.StringVar(&o.subID, "sub-id", "", "with --persistent: client id prefix of the subscribers (default sockmq-load-<random>-s)")
	} else {
		fs.StringVar(&o.url, "url", "ws://127.0.0.1:8080/socketcluster/", "SocketCluster server URL (ws://, loopback only)")
		fs.StringVar(&o.mqttPub, "mqtt-pub", "", "publish over MQTT to this broker host:port instead of over SC (cross-protocol: MQTT -> SC)")
		fs.IntVar(&o.qos, "qos", 0, "QoS of the MQTT publishers with --mqtt-pub")
		fs.StringVar(&o.prefix, "topic-prefix", "", "with --mqtt-pub: MQTT topic = prefix + channel (the bridge's bridge.topic_prefix)")
		fs.BoolVar(&o.invoke, "invoke", false, "publish as invoke (waits for each acknowledgement, --inflight at a time) instead of transmit")
		fs.StringVar(&o.user, "user", "", "MQTT user name for --mqtt-pub")
		fs.StringVar(&o.pass, "pass", "", "MQTT password for --mqtt-pub")
	}
	fs.StringVar(&o.client, "client", clientRaw, "MQTT client: raw (the tool's own MQTT 3.1.1 client, one reader goroutine per connection, little CPU per message) or paho (paho.mqtt.golang)")
	fs.IntVar(&o.pubs, "pubs", 1, "number of publishers")
	fs.IntVar(&o.subs, "subs", 1, "number of subscribers; each receives every publisher's messages")
	fs.IntVar(&o.msgs, "msgs", 10000, "messages per publisher (0: until --duration)")
	fs.IntVar(&o.size, "size", 64, "payload size in bytes (at least the ~30-byte header)")
	fs.StringVar(&o.fanout, "topic-fanout", "shared", "shared: every publisher uses one topic; per-pub: one topic per publisher")
	fs.DurationVar(&o.duration, "duration", 0, "stop publishing after this long (0: when --msgs are sent)")
	fs.DurationVar(&o.timeout, "timeout", 2*time.Minute, "hard limit for the whole run")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "after the last publish, wait this long without progress for missing messages")
	fs.Float64Var(&o.rate, "rate", 0, "messages per second per publisher (0: as fast as possible); latency is then measured from each message's scheduled send time, and messages due but never sent are counted")
	fs.IntVar(&o.window, "window", 500, "end-to-end window: publishers stay at most this many messages ahead of the subscribers (0: unlimited)")
	fs.IntVar(&o.inflight, "inflight", 256, "per publisher, unacknowledged publishes (QoS>0, invokes) before it waits")
	fs.StringVar(&o.topicBase, "topic", "", "topic/channel prefix (default sockmq-load/<random>)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as one JSON object")
	fs.StringVar(&o.label, "label", "", "label copied into the result")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sockmq-load %s [flags]\n\n", kind)
		if kind == "mqtt" {
			fmt.Fprint(stderr, "Publishers and subscribers over MQTT 3.1.1 (--client raw: the tool's own client; paho: paho.mqtt.golang),\nclean sessions (subscribers: persistent "+
				"with --persistent), keepalive 60s. With QoS 1/2 every publish's acknowledgement is timed\n"+
				"(PUBLISH sent -> PUBACK / PUBCOMP received: ack latency).\n\n")
		} else {
			fmt.Fprint(stderr, "Publishers and subscribers over the SocketCluster protocol v2 (#handshake, #subscribe, #publish).\n\n")
		}
		fs.PrintDefaults()
	}
	return fs, o
}

func (o *pubsubOpts) validate() error {
	switch {
	case o.pubs < 1 || o.pubs > 10000:
		return errors.New("--pubs must be 1..10000")
	case o.subs < 0 || o.subs > 10000:
		return errors.New("--subs must be 0..10000")
	case o.msgs < 0:
		return errors.New("--msgs must be >= 0")
	case o.msgs == 0 && o.duration == 0:
		return errors.New("--msgs 0 needs --duration")
	case o.qos < 0 || o.qos > 2:
		return errors.New("--qos must be 0, 1 or 2")
	case o.fanout != "shared" && o.fanout != "per-pub":
		return errors.New("--topic-fanout must be shared or per-pub")
	case o.timeout <= 0 || o.timeout > 30*time.Minute:
		return errors.New("--timeout must be between 0 and 30m")
	case o.inflight < 1:
		return errors.New("--inflight must be >= 1")
	case o.subID != "" && !o.persistent:
		return errors.New("--sub-id needs --persistent")
	case len(o.subID) > 60:
		return errors.New("--sub-id must be at most 60 bytes")
	case o.client != clientRaw && o.client != clientPaho:
		return errors.New("--client must be raw or paho")
	case o.inflight > maxInflight:
		return errors.New("--inflight must be at most 65535 (MQTT packet ids)")
	case o.size < 0 || o.size > 16<<20:
		return errors.New("--size must be 0..16777216")
	}
	if o.kind == "mqtt" {
		return checkLoopbackAddr(o.addr)
	}
	if err := checkLoopbackURL(o.url); err != nil {
		return err
	}
	if o.mqttPub != "" {
		return checkLoopbackAddr(o.mqttPub)
	}
	return nil
}

func runPubSub(kind string, args []string, stdout, stderr io.Writer) int {
	fs, o := pubsubFlags(kind, stderr)
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "sockmq-load %s: %v\n", kind, err)
		return 2
	}
	if o.topicBase == "" {
		o.topicBase = "sockmq-load/" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	// Failsafe: whatever hangs, the process ends shortly after --timeout.
	killer := time.AfterFunc(o.timeout+15*time.Second, func() {
		fmt.Fprintln(stderr, "sockmq-load: hard timeout, exiting")
		os.Exit(3)
	})
	defer killer.Stop()

	var tr transport
	if o.persistent && o.subID == "" {
		o.subID = "sockmq-load-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-s"
	}
	if kind == "mqtt" {
		tr = &mqttTransport{client: o.client, size: o.size, addr: o.addr, qos: byte(o.qos), user: o.user, pass: o.pass, inflight: o.inflight,
			persistent: o.persistent, subID: o.subID}
	} else {
		tr = &scTransport{url: o.url, invoke: o.invoke, inflight: o.inflight, mqttPub: o.mqttPub, prefix: o.prefix,
			mqtt: &mqttTransport{client: o.client, size: o.size, addr: o.mqttPub, qos: byte(o.qos), user: o.user, pass: o.pass, inflight: o.inflight}}
	}
	res := measure(o, tr)
	if o.jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	} else {
		printResult(stdout, res)
	}
	if res.Error != "" {
		return 1
	}
	return 0
}

// run state shared by publishers and subscribers.
type runState struct {
	sent      atomic.Int64 // publishes started
	delivered atomic.Int64 // deliveries to all subscribers, duplicates excluded
	credit    atomic.Int64 // deliveries given up on (window stalls), so the window moves on
	stalls    atomic.Int64

	// Publishers waiting for the window publish in winTarget the
	// delivered count that opens it (0: nobody waits) and wait for winCh
	// to close; the delivery that reaches the target closes it.
	winMu     sync.Mutex
	winCh     chan struct{}
	winTarget atomic.Int64
}

// delivery counts one new delivery and wakes the publishers waiting for
// the window if it opens the window.
func (st *runState) delivery() {
	d := st.delivered.Add(1)
	if t := st.winTarget.Load(); t > 0 && d >= t {
		st.winMu.Lock()
		if st.winCh != nil {
			close(st.winCh)
			st.winCh = nil
		}
		st.winTarget.Store(0)
		st.winMu.Unlock()
	}
}

// windowWaitCh returns the channel to wait on until delivered reaches
// need (at least; a lower target of another publisher wins).
func (st *runState) windowWaitCh(need int64) chan struct{} {
	st.winMu.Lock()
	defer st.winMu.Unlock()
	if st.winCh == nil {
		st.winCh = make(chan struct{})
	}
	if t := st.winTarget.Load(); t == 0 || need < t {
		st.winTarget.Store(need)
	}
	return st.winCh
}

func measure(o *pubsubOpts, tr transport) (res result) {
	res = result{Label: o.label, Kind: o.kind, Target: tr.target(), Pubs: o.pubs, Subs: o.subs, QoS: o.qos, Size: o.size,
		Fanout: o.fanout, Window: o.window, Rate: o.rate, Persistent: o.persistent, SubID: o.subID}
	if o.kind == "sc" && o.mqttPub == "" {
		res.QoS = 0
	} else {
		res.Client = o.client
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	cpu0 := cpuTime()
	lost0 := connLost.Load()
	st := &runState{}

	topics := make([]string, o.pubs)
	for i := range topics {
		if o.fanout == "shared" {
			topics[i] = o.topicBase + "/t"
		} else {
			topics[i] = o.topicBase + "/p" + strconv.Itoa(i)
		}
	}
	filter := o.topicBase + "/t"
	subTopics := topics[:1]
	if o.fanout == "per-pub" {
		filter = o.topicBase + "/+"
		subTopics = topics
	}

	// Subscribers first; each must be subscribed before publishing starts.
	trackers := make([]*tracker, o.subs)
	locks := make([]sync.Mutex, o.subs)
	subs := make([]subscriber, 0, o.subs)
	defer func() {
		for _, s := range subs {
			s.Close()
		}
	}()
	for i := 0; i < o.subs; i++ {
		t := newTracker(o.pubs)
		trackers[i] = t
		mu := &locks[i]
		onMsg := func(p []byte) {
			now := time.Now().UnixNano()
			sent, pub, seq, ok := parsePayload(p)
			mu.Lock()
			if !ok {
				t.bad++
				mu.Unlock()
				return
			}
			isNew := t.record(pub, seq, now-sent, now)
			mu.Unlock()
			if isNew {
				st.delivery()
			}
		}
		s, err := connectWithRetry(ctx, func() (subscriber, error) { return tr.newSub(ctx, i, filter, subTopics, onMsg) })
		if err != nil {
			res.Error = fmt.Sprintf("subscriber %d: %v", i, err)
			return res
		}
		subs = append(subs, s)
	}
	pubs := make([]publisher, 0, o.pubs)
	defer func() {
		for _, p := range pubs {
			p.Close()
		}
	}()
	for i := 0; i < o.pubs; i++ {
		p, err := connectWithRetry(ctx, func() (publisher, error) { return tr.newPub(ctx, i, topics[i]) })
		if err != nil {
			res.Error = fmt.Sprintf("publisher %d: %v", i, err)
			return res
		}
		pubs = append(pubs, p)
	}
	time.Sleep(100 * time.Millisecond) // let subscriptions settle on every broker

	pubCtx := ctx
	if o.duration > 0 {
		var c context.CancelFunc
		pubCtx, c = context.WithTimeout(ctx, o.duration)
		defer c()
	}
	cpuPub := cpuTime()
	start := time.Now()
	var wg sync.WaitGroup
	var published, pubErrs, scheduled atomic.Int64
	var firstErr atomic.Value
	var lagMu sync.Mutex
	var lags histogram
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ps := publishLoop(pubCtx, o, st, p, i, start)
			published.Add(ps.sent)
			pubErrs.Add(ps.errs)
			scheduled.Add(ps.scheduled)
			lagMu.Lock()
			lags.merge(&ps.lag)
			lagMu.Unlock()
			if ps.err != nil {
				firstErr.CompareAndSwap(nil, ps.err.Error())
			}
		}()
	}
	wg.Wait()
	pubEnd := time.Now()
	res.PendingAtPubEnd = max(0, (published.Load()-pubErrs.Load())*int64(o.subs)-st.delivered.Load())
	var acks histogram
	for _, p := range pubs {
		if a, ok := p.(interface{ ackTimes(*histogram) }); ok {
			a.ackTimes(&acks)
		}
	}

	// Wait for deliveries: until all arrived, no progress for --drain, or
	// the hard timeout.
	expected := (published.Load() - pubErrs.Load()) * int64(o.subs)
	last, lastChange := st.delivered.Load(), time.Now()
	for st.delivered.Load() < expected && ctx.Err() == nil {
		time.Sleep(5 * time.Millisecond)
		if d := st.delivered.Load(); d != last {
			last, lastChange = d, time.Now()
		} else if time.Since(lastChange) > o.drain {
			break
		}
	}
	res.TimedOut = ctx.Err() != nil

	var all histogram
	var lastRecv int64
	for i, t := range trackers {
		locks[i].Lock()
		all.merge(&t.hist)
		res.Delivered += int64(t.unique)
		res.Duplicates += int64(t.dups)
		res.Foreign += int64(t.bad)
		lastRecv = max(lastRecv, t.lastRecv)
		locks[i].Unlock()
	}
	res.Published = published.Load()
	res.PublishErrors = pubErrs.Load()
	res.PublishSecs = pubEnd.Sub(start).Seconds()
	if res.PublishSecs > 0 {
		res.PublishRate = float64(res.Published-res.PublishErrors) / res.PublishSecs
	}
	res.Expected = expected
	res.Lost = expected - res.Delivered
	res.NotReceived = res.Lost
	res.Scheduled = scheduled.Load()
	res.NeverSent = max(0, res.Scheduled-res.Published)
	res.LatFrom = "sent"
	if o.rate > 0 {
		res.LatFrom = "scheduled"
	}
	if lastRecv > 0 {
		res.DeliverSecs = time.Duration(lastRecv - start.UnixNano()).Seconds()
		if res.DeliverSecs > 0 {
			res.DeliverRate = float64(res.Delivered) / res.DeliverSecs
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	res.LatP50Ms, res.LatP90Ms, res.LatP99Ms = ms(all.quantile(0.5)), ms(all.quantile(0.9)), ms(all.quantile(0.99))
	res.LatMaxMs, res.LatMeanMs = ms(time.Duration(all.max)), ms(all.mean())
	res.Acked = int64(acks.n)
	res.AckP50Ms, res.AckP90Ms, res.AckP99Ms = ms(acks.quantile(0.5)), ms(acks.quantile(0.9)), ms(acks.quantile(0.99))
	res.AckMaxMs, res.AckMeanMs = ms(time.Duration(acks.max)), ms(acks.mean())
	res.WindowStalls = st.stalls.Load()
	res.ConnLost = connLost.Load() - lost0
	cpuEnd := cpuTime()
	res.ClientCPUSecs = (cpuEnd - cpu0).Seconds()
	res.SendLagP50Ms, res.SendLagP99Ms = ms(lags.quantile(0.5)), ms(lags.quantile(0.99))
	res.SendLagMaxMs = ms(time.Duration(lags.max))
	res.ClientCores = runtime.NumCPU()
	if wall := time.Since(start); wall > 0 {
		res.ClientCoreUtil = (cpuEnd - cpuPub).Seconds() / (wall.Seconds() * float64(res.ClientCores))
		res.ToolLimited = res.ClientCoreUtil >= toolLimitedUtil
	}
	if e, ok := firstErr.Load().(string); ok && res.Published == res.PublishErrors {
		res.Error = e
	}
	return res
}

// connectWithRetry retries a few times: a burst of connections can exceed
// a listen backlog.
func connectWithRetry[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var v T
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if v, err = f(); err == nil || ctx.Err() != nil {
			return v, err
		}
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	return v, err
}

// toolLimitedUtil is the load tool's core utilisation from which a run
// is called tool-limited.
const toolLimitedUtil = 0.95

// pubStats is what one publisher did.
type pubStats struct {
	sent, errs int64
	scheduled  int64     // messages due by the time publishing stopped
	lag        histogram // with a rate: actual send time - scheduled time
	err        error     // the first error
}

// publishLoop sends this publisher's messages. With --rate, message seq is
// due at start + seq/rate and its payload carries that scheduled time, so
// whatever delays the publisher (a blocked socket, the window, the
// acknowledgement limit) counts in the measured latency; when publishing
// stops (--duration, --timeout) the messages already due but not sent are
// counted as scheduled, never sent.
func publishLoop(ctx context.Context, o *pubsubOpts, st *runState, p publisher, idx int, start time.Time) (ps pubStats) {
	var interval time.Duration
	if o.rate > 0 {
		interval = time.Duration(float64(time.Second) / o.rate)
	}
	seq := 0
	for ; o.msgs == 0 || seq < o.msgs; seq++ {
		if ctx.Err() != nil {
			break
		}
		var due time.Time
		if interval > 0 {
			due = start.Add(time.Duration(seq) * interval)
			if d := time.Until(due); d > 0 {
				if !sleepCtx(ctx, d) {
					break
				}
			}
		}
		if o.window > 0 && o.subs > 0 {
			waitWindow(ctx, o, st)
		}
		now := time.Now()
		stamp := now
		if interval > 0 {
			stamp = due
			ps.lag.record(int64(now.Sub(due)))
		}
		st.sent.Add(1)
		payload := appendPayload(make([]byte, 0, max(o.size, 40)), stamp.UnixNano(), idx, seq, o.size)
		ps.sent++
		if err := p.Publish(payload); err != nil {
			ps.errs++
			if ps.err == nil {
				ps.err = err
			}
			if ps.errs > 100 && ps.errs == ps.sent {
				break // the connection is gone
			}
		}
	}
	stopped := time.Now()
	switch {
	case interval > 0:
		// Messages 0..k are due by stopped, k = (stopped-start)/interval.
		due := int64(stopped.Sub(start)/interval) + 1
		if o.msgs > 0 {
			due = min(due, int64(o.msgs))
		}
		ps.scheduled = max(due, ps.sent)
	case o.msgs > 0:
		ps.scheduled = int64(o.msgs)
	default:
		ps.scheduled = ps.sent
	}
	if err := p.Flush(10 * time.Second); err != nil && ps.err == nil {
		ps.err = err
	}
	return ps
}

// sleepCtx sleeps for d and reports false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// waitWindow blocks while publishers are more than --window messages ahead
// of the average subscriber; the delivery that opens the window wakes it.
// If deliveries stop for 500ms (messages lost), the missing deliveries
// are written off so the run goes on; each such event counts as a window
// stall.
func waitWindow(ctx context.Context, o *pubsubOpts, st *runState) {
	subs := int64(o.subs)
	w := int64(o.window)
	ahead := func() bool {
		return st.sent.Load()-(st.delivered.Load()+st.credit.Load())/subs >= w
	}
	if !ahead() {
		return
	}
	const check = 100 * time.Millisecond // how often progress is checked for a stall
	t := time.NewTimer(check)
	defer t.Stop()
	last, since := st.delivered.Load(), time.Now()
	for ctx.Err() == nil {
		// The window opens once delivered + credit >= (sent - w + 1) * subs.
		ch := st.windowWaitCh((st.sent.Load()-w+1)*subs - st.credit.Load())
		if !ahead() { // checked after the target is published: no wake-up is missed
			return
		}
		select {
		case <-ch:
			continue
		case <-ctx.Done():
			return
		case <-t.C:
			t.Reset(check)
		}
		if d := st.delivered.Load(); d != last {
			last, since = d, time.Now()
		} else if time.Since(since) > 500*time.Millisecond {
			gap := st.sent.Load()*subs - st.delivered.Load() - st.credit.Load()
			if gap > 0 {
				st.credit.Add(gap)
			}
			st.stalls.Add(1)
			since = time.Now()
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func printResult(w io.Writer, r result) {
	fmt.Fprintf(w, "%s %s  pubs=%d subs=%d qos=%d size=%d fanout=%s window=%d rate=%g\n",
		r.Kind, r.Target, r.Pubs, r.Subs, r.QoS, r.Size, r.Fanout, r.Window, r.Rate)
	if r.Persistent {
		fmt.Fprintf(w, "  subscribers: persistent sessions %s0..%s%d (kept)\n", r.SubID, r.SubID, r.Subs-1)
	}
	if r.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", r.Error)
	}
	fmt.Fprintf(w, "  published  %d (%d errors) in %.2fs = %.0f msg/s\n", r.Published, r.PublishErrors, r.PublishSecs, r.PublishRate)
	fmt.Fprintf(w, "  delivered  %d of %d in %.2fs = %.0f msg/s; lost %d, duplicates %d, foreign %d\n",
		r.Delivered, r.Expected, r.DeliverSecs, r.DeliverRate, r.Lost, r.Duplicates, r.Foreign)
	fmt.Fprintf(w, "  scheduled  %d, never sent %d; sent but not received %d (deliveries), %d still on their way when publishing ended\n",
		r.Scheduled, r.NeverSent, r.NotReceived, r.PendingAtPubEnd)
	fmt.Fprintf(w, "  latency    p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  mean %.3fms (from the %s time)\n",
		r.LatP50Ms, r.LatP90Ms, r.LatP99Ms, r.LatMaxMs, r.LatMeanMs, r.LatFrom)
	if r.LatFrom == "scheduled" {
		fmt.Fprintf(w, "  send lag   p50 %.3fms  p99 %.3fms  max %.3fms (sent after the scheduled time)\n",
			r.SendLagP50Ms, r.SendLagP99Ms, r.SendLagMaxMs)
	}
	if r.Acked > 0 {
		fmt.Fprintf(w, "  ack latency p50 %.3fms  p90 %.3fms  p99 %.3fms  max %.3fms  mean %.3fms (%d acknowledgements)\n",
			r.AckP50Ms, r.AckP90Ms, r.AckP99Ms, r.AckMaxMs, r.AckMeanMs, r.Acked)
	}
	limited := ""
	if r.ToolLimited {
		limited = " TOOL-LIMITED"
	}
	fmt.Fprintf(w, "  window stalls %d, connections lost %d, load-tool CPU %.2fs (%.0f%% of %d core(s)%s), timed out %v\n",
		r.WindowStalls, r.ConnLost, r.ClientCPUSecs, 100*r.ClientCoreUtil, r.ClientCores, limited, r.TimedOut)
}

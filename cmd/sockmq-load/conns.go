package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// connsResult is what the conns and sc-conns commands report.
type connsResult struct {
	Kind        string  `json:"kind"`
	Target      string  `json:"target"`
	Requested   int     `json:"requested"`
	Connected   int64   `json:"connected"`
	Failed      int64   `json:"failed"`
	Dropped     int64   `json:"dropped"` // closed by the server while held
	ConnectSecs float64 `json:"connect_secs"`
	ConnectRate float64 `json:"connect_rate"`
	HeldSecs    float64 `json:"held_secs"`
	FirstError  string  `json:"first_error,omitempty"`
}

// runConns opens N idle connections, prints "READY <connected> <failed>"
// on stdout once they are all up, holds them for --hold (or until SIGINT,
// SIGTERM or stdin closing with --stdin), closes them and prints a summary.
func runConns(kind string, args []string, stdout, stderr io.Writer) int {
	name := "conns"
	if kind == "sc" {
		name = "sc-conns"
	}
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1883", "MQTT broker host:port (conns; loopback only)")
	url := fs.String("url", "ws://127.0.0.1:8080/socketcluster/", "SocketCluster URL (sc-conns; ws://, loopback only)")
	n := fs.Int("n", 1000, "number of connections (at most 50000)")
	hold := fs.Duration("hold", 60*time.Second, "how long to hold them once connected (at most 10m)")
	conc := fs.Int("concurrency", 32, "connections opened in parallel")
	keepalive := fs.Int("keepalive", 60, "MQTT keepalive in seconds (conns)")
	user := fs.String("user", "", "MQTT user name (conns)")
	pass := fs.String("pass", "", "MQTT password (conns)")
	sub := fs.Bool("sub", false, "conns: after CONNECT, subscribe each connection to its own topic (<topic>/<i>, QoS 1) and wait for the SUBACK")
	subTopic := fs.String("topic", "sockmq-idle", "conns --sub: topic prefix")
	useStdin := fs.Bool("stdin", false, "also stop when stdin reaches EOF")
	jsonOut := fs.Bool("json", false, "print the summary as one JSON object")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sockmq-load %s [flags]\n\n", name)
		if kind == "mqtt" {
			fmt.Fprint(stderr, "Opens N idle MQTT 3.1.1 connections (clean session; no subscription, or one each with --sub) and holds them.\n")
		} else {
			fmt.Fprint(stderr, "Opens N idle SocketCluster sockets (handshake done, pings answered) and holds them.\n")
		}
		fmt.Fprint(stderr, "Prints \"READY <connected> <failed>\" when all are open, so a script can then read the\nserver's memory (e.g. VmRSS in /proc/<pid>/status).\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	var err error
	target := *addr
	if kind == "sc" {
		target = *url
		err = checkLoopbackURL(*url)
	} else {
		err = checkLoopbackAddr(*addr)
	}
	switch {
	case err != nil:
	case *n < 1 || *n > 50000:
		err = errors.New("--n must be 1..50000")
	case *hold < 0 || *hold > 10*time.Minute:
		err = errors.New("--hold must be between 0 and 10m")
	case *conc < 1:
		err = errors.New("--concurrency must be >= 1")
	case *keepalive < 0 || *keepalive > 65535:
		err = errors.New("--keepalive must be 0..65535")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sockmq-load %s: %v\n", name, err)
		return 2
	}
	killer := time.AfterFunc(*hold+5*time.Minute, func() { os.Exit(3) })
	defer killer.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute) // connecting phase
	defer cancel()
	res := connsResult{Kind: kind, Target: target, Requested: *n}
	var (
		mu       sync.Mutex
		closers  []func()
		failed   atomic.Int64
		dropped  atomic.Int64
		firstErr atomic.Value
		stopping atomic.Bool
	)
	onDrop := func() {
		if !stopping.Load() {
			dropped.Add(1)
		}
	}
	start := time.Now()
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	runID := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	for i := 0; i < *n; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			var closer func()
			var err error
			if kind == "sc" {
				closer, err = idleSC(ctx, *url, onDrop)
			} else {
				filter := ""
				if *sub {
					filter = *subTopic + "/" + runID + "/" + strconv.Itoa(i)
				}
				closer, err = idleMQTT(*addr, "sockmq-idle-"+runID+"-"+strconv.Itoa(i), *user, *pass, uint16(*keepalive), filter, onDrop)
			}
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				return
			}
			mu.Lock()
			closers = append(closers, closer)
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.ConnectSecs = time.Since(start).Seconds()
	res.Connected = int64(len(closers))
	res.Failed = failed.Load()
	if res.ConnectSecs > 0 {
		res.ConnectRate = float64(res.Connected) / res.ConnectSecs
	}
	fmt.Fprintf(stdout, "READY %d %d\n", res.Connected, res.Failed)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sig)
	eof := make(chan struct{})
	if *useStdin {
		go func() { _, _ = io.Copy(io.Discard, os.Stdin); close(eof) }()
	}
	held := time.Now()
	select {
	case <-time.After(*hold):
	case <-sig:
	case <-eof:
	}
	res.HeldSecs = time.Since(held).Seconds()
	stopping.Store(true)
	res.Dropped = dropped.Load()
	for _, c := range closers {
		c()
	}
	if e, ok := firstErr.Load().(string); ok {
		res.FirstError = e
	}
	if *jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "%s %s: %d of %d connected (%d failed) in %.2fs = %.0f conn/s; held %.1fs, %d dropped by the server\n",
			name, target, res.Connected, *n, res.Failed, res.ConnectSecs, res.ConnectRate, res.HeldSecs, res.Dropped)
		if res.FirstError != "" {
			fmt.Fprintf(stdout, "  first error: %s\n", res.FirstError)
		}
	}
	return 0
}

// idleMQTT opens one MQTT 3.1.1 connection with a hand-written CONNECT (no
// client library, so the load tool stays small next to the broker),
// subscribes it to filter (QoS 1) unless filter is empty, and keeps it
// alive with PINGREQ.
func idleMQTT(addr, id, user, pass string, keepalive uint16, filter string, onDrop func()) (func(), error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Write(connectPacket(id, user, pass, keepalive)); err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		conn.Close()
		return nil, fmt.Errorf("connack: %w", err)
	}
	if ack[0] != 0x20 || ack[3] != 0 {
		conn.Close()
		return nil, fmt.Errorf("connection refused: connack % x", ack)
	}
	if filter != "" {
		if _, err := conn.Write(subscribePacket(1, filter, 1)); err != nil {
			conn.Close()
			return nil, err
		}
		var suback [5]byte
		if _, err := io.ReadFull(conn, suback[:]); err != nil {
			conn.Close()
			return nil, fmt.Errorf("suback: %w", err)
		}
		if suback[0] != 0x90 || suback[1] != 3 || suback[4] == 0x80 {
			conn.Close()
			return nil, fmt.Errorf("subscription refused: suback % x", suback)
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	stop := make(chan struct{})
	readDone := make(chan struct{})
	go func() { // reads PINGRESPs, notices the server closing
		defer close(readDone)
		buf := make([]byte, 64)
		for {
			if _, err := conn.Read(buf); err != nil {
				select {
				case <-stop:
				default:
					onDrop()
				}
				return
			}
		}
	}()
	if keepalive > 0 {
		go func() {
			t := time.NewTicker(time.Duration(keepalive) * time.Second * 3 / 4)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-readDone:
					return
				case <-t.C:
					_, _ = conn.Write([]byte{0xC0, 0x00})
				}
			}
		}()
	}
	return func() {
		close(stop)
		_, _ = conn.Write([]byte{0xE0, 0x00}) // DISCONNECT
		conn.Close()
		<-readDone
	}, nil
}

// connectPacket builds an MQTT 3.1.1 CONNECT with clean session.
func connectPacket(id, user, pass string, keepalive uint16) []byte {
	str := func(b []byte, s string) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	flags := byte(0x02)
	var body []byte
	body = str(body, "MQTT")
	body = append(body, 4, 0, byte(keepalive>>8), byte(keepalive))
	body = str(body, id)
	if user != "" {
		flags |= 0x80
		body = str(body, user)
		if pass != "" {
			flags |= 0x40
			body = str(body, pass)
		}
	}
	body[7] = flags
	return append(append([]byte{0x10}, remainingLength(len(body))...), body...)
}

// subscribePacket builds an MQTT 3.1.1 SUBSCRIBE for one filter.
func subscribePacket(id uint16, filter string, qos byte) []byte {
	body := []byte{byte(id >> 8), byte(id), byte(len(filter) >> 8), byte(len(filter))}
	body = append(append(body, filter...), qos)
	return append(append([]byte{0x82}, remainingLength(len(body))...), body...)
}

// remainingLength encodes an MQTT remaining length.
func remainingLength(l int) []byte {
	var out []byte
	for {
		b := byte(l % 128)
		l /= 128
		if l > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if l == 0 {
			return out
		}
	}
}

// idleSC opens one SocketCluster socket, completes the handshake and
// leaves it idle (the read loop answers pings).
func idleSC(ctx context.Context, url string, onDrop func()) (func(), error) {
	c, err := dialSC(ctx, url, nil)
	if err != nil {
		return nil, err
	}
	go func() {
		<-c.done
		if !c.closing.Load() {
			onDrop()
		}
	}()
	return c.Close, nil
}

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"time"

	pahov3 "github.com/eclipse/paho.mqtt.golang"
)

// runState fills a broker with state that stays after the command ends:
// retained messages on distinct topics, and persistent sessions
// (clean_session=false) that are offline with QoS 1 messages queued. A
// script can then measure what that state costs the broker while nothing
// happens (CPU per second, memory).
func runStateCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("state", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:1883", "MQTT broker host:port (loopback only)")
	retained := fs.Int("retained", 0, "retained messages to publish, each on its own topic")
	sessions := fs.Int("sessions", 0, "offline persistent sessions to create")
	queued := fs.Int("queued", 0, "QoS 1 messages to queue for each offline session")
	size := fs.Int("size", 64, "payload size in bytes")
	base := fs.String("topic", "", "topic prefix (default sockmq-load/state/<random>)")
	user := fs.String("user", "", "MQTT user name")
	pass := fs.String("pass", "", "MQTT password")
	timeout := fs.Duration("timeout", 3*time.Minute, "hard limit for the whole command")
	jsonOut := fs.Bool("json", false, "print the summary as one JSON object")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: sockmq-load state [flags]\n\nLeaves state in an MQTT broker: retained messages and offline persistent sessions with\nqueued QoS 1 messages (clients use MQTT 3.1.1).\n\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	err := checkLoopbackAddr(*addr)
	switch {
	case err != nil:
	case *retained < 0 || *retained > 1_000_000:
		err = errors.New("--retained must be 0..1000000")
	case *sessions < 0 || *sessions > 10000:
		err = errors.New("--sessions must be 0..10000")
	case *queued < 0 || *queued > 65535:
		err = errors.New("--queued must be 0..65535")
	}
	if err != nil {
		fmt.Fprintf(stderr, "sockmq-load state: %v\n", err)
		return 2
	}
	if *base == "" {
		*base = "sockmq-load/state/" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	start := time.Now()
	res, err := fillState(ctx, &mqttTransport{addr: *addr, qos: 1, user: *user, pass: *pass, inflight: 256}, *base, *retained, *sessions, *queued, *size)
	res["secs"] = time.Since(start).Seconds()
	if err != nil {
		res["error"] = err.Error()
	}
	if *jsonOut {
		b, _ := json.Marshal(res)
		fmt.Fprintln(stdout, string(b))
	} else {
		fmt.Fprintf(stdout, "state %s: %v\n", *addr, res)
	}
	if err != nil {
		return 1
	}
	return 0
}

func fillState(ctx context.Context, t *mqttTransport, base string, retained, sessions, queued, size int) (map[string]any, error) {
	res := map[string]any{"retained": 0, "sessions": 0, "queued_per_session": 0}
	pub, err := t.connect("state", 0, nil)
	if err != nil {
		return res, err
	}
	defer pub.Disconnect(100)
	publish := func(topic string, retain bool, n int) error {
		toks := make([]pahov3.Token, 0, 256)
		wait := func() error {
			for _, tok := range toks {
				if !tok.WaitTimeout(30 * time.Second) {
					return errors.New("publish not acknowledged in time")
				}
				if err := tok.Error(); err != nil {
					return err
				}
			}
			toks = toks[:0]
			return ctx.Err()
		}
		for i := 0; i < n; i++ {
			tp := topic
			if retain {
				tp = topic + "/" + strconv.Itoa(i)
			}
			toks = append(toks, pub.Publish(tp, 1, retain, appendPayload(nil, time.Now().UnixNano(), 0, i, size)))
			if len(toks) == cap(toks) {
				if err := wait(); err != nil {
					return err
				}
			}
		}
		return wait()
	}
	if retained > 0 {
		if err := publish(base+"/r", true, retained); err != nil {
			return res, fmt.Errorf("retained: %w", err)
		}
		res["retained"] = retained
	}
	if sessions > 0 {
		for i := 0; i < sessions; i++ {
			if err := offlineSession(t, base, i); err != nil {
				return res, fmt.Errorf("session %d: %w", i, err)
			}
		}
		res["sessions"] = sessions
		if queued > 0 {
			if err := publish(base+"/q", false, queued); err != nil {
				return res, fmt.Errorf("queue: %w", err)
			}
			res["queued_per_session"] = queued
		}
	}
	return res, nil
}

// offlineSession creates a persistent session subscribed to base/q (QoS 1)
// and disconnects it.
func offlineSession(t *mqttTransport, base string, i int) error {
	id := "sockmq-load-q-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36) + "-" + strconv.Itoa(i)
	o := pahov3.NewClientOptions().AddBroker("tcp://" + t.addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(false).SetKeepAlive(60 * time.Second).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
	if t.user != "" {
		o.SetUsername(t.user).SetPassword(t.pass)
	}
	c := pahov3.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("connect: %v", tok.Error())
	}
	if tok := c.Subscribe(base+"/q", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		c.Disconnect(0)
		return fmt.Errorf("subscribe: %v", tok.Error())
	}
	c.Disconnect(100)
	return nil
}

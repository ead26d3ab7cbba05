// Command sockmq-load is sockmq's load generator. It measures an MQTT broker
// (sockmq, mosquitto, any MQTT 3.1.1 broker) or a SocketCluster server
// (sockmq's bridge, socketcluster-server) with the same clients and the same
// arithmetic, so that results can be put side by side:
//
//	sockmq-load mqtt     publishers and subscribers over MQTT 3.1.1
//	sockmq-load sc       publishers and subscribers over SocketCluster
//	                     (optionally MQTT publishers feeding SC subscribers)
//	sockmq-load conns    hold N idle MQTT connections (memory per connection),
//	                     optionally with one subscription each (--sub)
//	sockmq-load sc-conns hold N idle SocketCluster sockets
//	sockmq-load state    leave retained messages and offline sessions with
//	                     queued messages in a broker (idle-cost scenarios)
//
// Every payload carries the publisher number, a sequence number and the
// send time, so subscribers count lost and duplicated messages and the
// end-to-end latency. QoS 1/2 publishers also time every acknowledgement
// (PUBLISH sent to PUBACK/PUBCOMP received), and mqtt subscribers can hold
// persistent sessions (--persistent). Publishers can be throttled by a rate or by an
// end-to-end window (how far they may run ahead of the subscribers), so a
// run measures the throughput a broker sustains without dropping messages.
//
// With --rate, each message has a scheduled send time and its payload
// carries that time: latency is measured from when the message should have
// been sent, so a publisher that falls behind (blocked socket, window,
// acknowledgement limit, busy core) shows up in the latency instead of
// being hidden (no coordinated omission). A run reports the messages that
// were due but never sent, those sent but not received, how many were
// still on their way when publishing ended, and the tool's own core
// utilisation (tool_limited when its cores were at least 95% busy).
//
// MQTT clients are the tool's own MQTT 3.1.1 client (--client raw, the
// default: one reader goroutine per connection that handles every packet
// of a read from a reused buffer and writes their acknowledgements at
// once, so the tool spends a few microseconds per message and a run
// measures the broker) or paho.mqtt.golang (--client paho).
//
// Safety: every target must be a loopback address (127.0.0.0/8, ::1,
// localhost) and every run ends by itself (--timeout, default 2m).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
)

const usage = `sockmq-load: load generator for MQTT brokers and SocketCluster servers (loopback only).

Usage:
  sockmq-load mqtt     [flags]   pub/sub throughput, latency, loss over MQTT 3.1.1
  sockmq-load sc       [flags]   the same over the SocketCluster protocol
  sockmq-load conns    [flags]   hold N idle MQTT connections
  sockmq-load sc-conns [flags]   hold N idle SocketCluster sockets
  sockmq-load state    [flags]   leave retained messages / offline queued sessions in a broker

Run "sockmq-load <command> --help" for the flags of a command.

Examples:
  sockmq-load mqtt --addr 127.0.0.1:1883 --pubs 1 --subs 100 --msgs 20000 --qos 0 --size 64
  sockmq-load mqtt --addr 127.0.0.1:1883 --pubs 50 --subs 1 --msgs 2000 --topic-fanout per-pub
  sockmq-load mqtt --addr 127.0.0.1:1883 --pubs 16 --subs 1 --msgs 5000 --qos 1 --persistent
  sockmq-load sc --url ws://127.0.0.1:8080/socketcluster/ --subs 100 --msgs 20000
  sockmq-load sc --url ws://127.0.0.1:8080/socketcluster/ --mqtt-pub 127.0.0.1:1883 --subs 100
  sockmq-load conns --addr 127.0.0.1:1883 --n 1000 --hold 30s
  sockmq-load conns --addr 127.0.0.1:1883 --n 15000 --sub --hold 60s
  sockmq-load mqtt --addr 127.0.0.1:1883 --subs 100 --qos 1 --rate 1000 --msgs 0 --duration 10s --window 0
  sockmq-load mqtt --addr 127.0.0.1:1883 --qos 2 --msgs 5000 --client paho   (paho.mqtt.golang instead of the raw client)

The mqtt command and sc --mqtt-pub use the tool's own MQTT 3.1.1 client (--client raw, little CPU
per message) unless --client paho is given.

Results go to stdout as text, or as one JSON object with --json.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "mqtt":
		return runPubSub("mqtt", rest, stdout, stderr)
	case "sc":
		return runPubSub("sc", rest, stdout, stderr)
	case "conns":
		return runConns("mqtt", rest, stdout, stderr)
	case "sc-conns":
		return runConns("sc", rest, stdout, stderr)
	case "state":
		return runStateCmd(rest, stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "sockmq-load: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

// parseFlags parses a subcommand's flags; when it returns ok false the
// command ends with code (0 after --help, 2 for a usage error).
func parseFlags(fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	return 0, true
}

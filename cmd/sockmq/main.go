// Command sockmq is an MQTT broker whose channels are shared with browsers
// speaking the SocketCluster protocol over WebSocket.
//
// Usage:
//
//	sockmq [serve] [-c config.yaml]   run the broker (the default command)
//	sockmq check -c config.yaml       validate a configuration file and exit
//	sockmq passwd ...                 manage a mosquitto-compatible password file
//	sockmq version                    print the version
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `sockmq - an MQTT broker that shares its channels with SocketCluster WebSocket clients

Usage:
  sockmq [serve] [-c config.yaml]   run the broker (default command)
  sockmq check -c config.yaml       validate a configuration file and exit (0 = valid)
  sockmq passwd [options] file user manage a mosquitto-compatible password file
  sockmq version                    print the version
  sockmq help [command]             show help for a command

Without -c, sockmq runs on its embedded defaults: MQTT on 127.0.0.1:1883,
HTTP (MQTT over WebSocket at /mqtt, /healthz, /metrics, SocketCluster at
/socketcluster/) on 127.0.0.1:8080, anonymous clients allowed on loopback,
data kept in ./data.

Run "sockmq <command> --help" for a command's options.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	} else if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help") {
		fmt.Fprint(stdout, usage)
		return 0
	}
	switch cmd {
	case "serve":
		return runServe(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "passwd":
		return runPasswd(args, stdin, stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "sockmq %s\n", version)
		return 0
	case "help":
		if len(args) == 0 {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return run([]string{args[0], "--help"}, stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sockmq: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

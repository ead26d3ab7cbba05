// Command sockmq is an MQTT broker whose channels are shared with browsers
// speaking the SocketCluster protocol over WebSocket.
//
// Usage:
//
//	sockmq [serve] [-c config.yaml]   run the broker (the default command)
//	sockmq check [-c config.yaml]     check a configuration and exit
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
  sockmq check [-c config.yaml]     check a configuration and exit (0 = valid);
                                    without -c, the embedded defaults
  sockmq passwd [options] file user manage a mosquitto-compatible password file
  sockmq version                    print the version (also: sockmq --version)
  sockmq help [command]             show help for a command

Without -c, sockmq runs on its embedded defaults: MQTT on 127.0.0.1:1883,
HTTP (MQTT over WebSocket at /mqtt, /healthz, /metrics, SocketCluster at
/socketcluster/) on 127.0.0.1:8080, anonymous clients allowed on loopback,
data kept in ./data (relative to the working directory). Relative paths in
a configuration file are relative to the file's directory.

Run "sockmq <command> --help" for a command's options.
`

const versionUsage = `Usage: sockmq version

Prints the version of this binary ("sockmq --version" does the same).
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run dispatches a command line and returns the process exit code. Help
// that was asked for goes to stdout with exit 0; usage errors go to stderr
// with exit 2.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			fmt.Fprint(stdout, usage)
			return 0
		case "-version", "--version":
			return runVersion(args[1:], stdout, stderr)
		}
		if args[0] != "" && args[0][0] != '-' {
			cmd, args = args[0], args[1:]
		}
	}
	switch cmd {
	case "serve":
		return runServe(args, stdout, stderr)
	case "check":
		return runCheck(args, stdout, stderr)
	case "passwd":
		return runPasswd(args, stdin, stdout, stderr)
	case "version":
		return runVersion(args, stdout, stderr)
	case "help":
		if len(args) == 0 || args[0] == "help" {
			fmt.Fprint(stdout, usage)
			return 0
		}
		return run([]string{args[0], "--help"}, stdin, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "sockmq: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
}

func runVersion(args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		fmt.Fprintf(stdout, "sockmq %s\n", version)
		return 0
	case len(args) == 1 && isHelp(args[0]):
		fmt.Fprint(stdout, versionUsage)
		return 0
	default:
		fmt.Fprintf(stderr, "sockmq version: unexpected argument %q\n\n%s", args[0], versionUsage)
		return 2
	}
}

func isHelp(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

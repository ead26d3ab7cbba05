package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// parseFlags parses args with fs. Help that was asked for (-h, --help)
// prints usage and the flags to stdout; a bad flag prints the error and the
// usage to stderr. When done is true the command exits with code.
func parseFlags(fs *flag.FlagSet, args []string, usage string, stdout, stderr io.Writer) (code int, done bool) {
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	switch {
	case err == nil:
		return 0, false
	case errors.Is(err, flag.ErrHelp):
		printUsage(fs, usage, stdout)
		return 0, true
	default:
		fmt.Fprintf(stderr, "%s: %v\n\n", fs.Name(), err)
		printUsage(fs, usage, stderr)
		return 2, true
	}
}

// usageError reports a bad command line on stderr with the usage; exit 2.
func usageError(fs *flag.FlagSet, usage string, stderr io.Writer, format string, args ...any) int {
	fmt.Fprintf(stderr, "%s: %s\n\n", fs.Name(), fmt.Sprintf(format, args...))
	printUsage(fs, usage, stderr)
	return 2
}

func printUsage(fs *flag.FlagSet, usage string, w io.Writer) {
	fmt.Fprint(w, usage)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
}

func configFlag(fs *flag.FlagSet) *string {
	p := fs.String("c", "", "path to config.yaml (default: the embedded defaults)")
	fs.StringVar(p, "config", "", "same as -c")
	return p
}

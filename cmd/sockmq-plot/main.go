package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("sockmq-plot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "bench/results/lean.jsonl", "JSON lines written by scripts/bench.sh --lean")
	out := fs.String("out", "bench/plots", "directory for the SVG files")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := plot(*in, *out); err != nil {
		fmt.Fprintf(stderr, "sockmq-plot: %v\n", err)
		return 1
	}
	return 0
}

// charts builds the charts drawn from the records.
func charts(recs []record) map[string]chart {
	return map[string]chart{
		"rss-vs-connections.svg": {
			Title:  "Server RSS vs idle connections held (fresh server, medians)",
			XLabel: "idle connections (MQTT: CONNECT + 1 subscription; SC: handshake)",
			YLabel: "RSS, MiB",
			Series: rssSeries(recs),
		},
		"cpu-per-message.svg": {
			Title:  "Server CPU per message vs rate, QoS 1 1 → 1 (medians)",
			XLabel: "delivered msg/s (paced at 500, 1,000, 2,000, 5,000 msg/s, and as fast as possible)",
			YLabel: "server CPU per message, µs",
			LogX:   true,
			Series: cpuSeries(recs),
		},
	}
}

func plot(in, outDir string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if len(recs) == 0 {
		return fmt.Errorf("%s: no --lean results", in)
	}
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return err
	}
	for name, c := range charts(recs) {
		if err := writeChart(filepath.Join(outDir, name), c); err != nil {
			return err
		}
	}
	return nil
}

func writeChart(path string, c chart) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := c.render(f); err != nil {
		f.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	return f.Close()
}

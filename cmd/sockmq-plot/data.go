package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"sort"
)

// record is one JSON line of the --lean section; fields that a scenario
// does not have stay zero (or nil).
type record struct {
	Section     string   `json:"section"`
	Run         string   `json:"run"`
	Build       string   `json:"build"`
	Scenario    string   `json:"scenario"`
	Server      string   `json:"server"`
	N           int      `json:"n"`
	Connected   float64  `json:"connected"`
	RSSAfterKiB float64  `json:"rss_after_kib"`
	OfferedRate *float64 `json:"offered_rate"`
	DeliverRate *float64 `json:"deliver_rate"`
	CPUPerMsg   *float64 `json:"cpu_us_per_msg"`
}

// readRecords reads the JSON lines of r, keeping the --lean section's.
// Blank lines are skipped; a line that is not JSON is an error naming it.
func readRecords(r io.Reader) ([]record, error) {
	var out []record
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(b) == 0 {
			continue
		}
		var rec record
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if rec.Section == "lean" {
			out = append(out, rec)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading results: %w", err)
	}
	return out, nil
}

// point is one (x, y) of a series.
type point struct{ X, Y float64 }

// series is one line of a chart.
type series struct {
	Name   string
	Points []point // sorted by X
}

// selectRuns returns, for each sockmq build label, its latest run that
// has a record the chart draws (keep), and the latest such run of all (for
// the reference servers): a later run of only some sections does not hide
// a chart's lines. Run ids sort by time.
func selectRuns(recs []record, keep func(record) bool) (byBuild map[string]string, latest string) {
	byBuild = map[string]string{}
	for _, r := range recs {
		if !keep(r) {
			continue
		}
		if r.Run > byBuild[r.Build] {
			byBuild[r.Build] = r.Run
		}
		if r.Run > latest {
			latest = r.Run
		}
	}
	return byBuild, latest
}

// seriesKey names the line a record belongs to, or "" if the record is
// not drawn (an older run).
func seriesKey(r record, suffix string, byBuild map[string]string, latest string) string {
	if r.Server == "sockmq" {
		if byBuild[r.Build] != r.Run {
			return ""
		}
		return "sockmq" + suffix + " (" + r.Build + ")"
	}
	if r.Run != latest {
		return ""
	}
	return r.Server + suffix
}

// rssSeries: median RSS (MiB) after connecting against median connections
// held, per number requested, for the idle-mqtt and idle-sc scenarios.
func rssSeries(recs []record) []series {
	byBuild, latest := selectRuns(recs, func(r record) bool {
		return (r.Scenario == "idle-mqtt" || r.Scenario == "idle-sc") && r.Connected > 0 && r.RSSAfterKiB > 0
	})
	type key struct {
		name string
		n    int
	}
	xs, ys := map[key][]float64{}, map[key][]float64{}
	for _, r := range recs {
		suffix := ""
		switch r.Scenario {
		case "idle-mqtt":
			suffix = " MQTT"
		case "idle-sc":
			suffix = " SC sockets"
		default:
			continue
		}
		if r.Connected <= 0 || r.RSSAfterKiB <= 0 {
			continue
		}
		name := seriesKey(r, suffix, byBuild, latest)
		if name == "" {
			continue
		}
		k := key{name, r.N}
		xs[k] = append(xs[k], r.Connected)
		ys[k] = append(ys[k], r.RSSAfterKiB/1024)
	}
	pts := map[string][]point{}
	for k := range xs {
		pts[k.name] = append(pts[k.name], point{median(xs[k]), median(ys[k])})
	}
	return sortedSeries(pts)
}

// isCPUPoint reports whether r is a point of the CPU-per-message chart.
func isCPUPoint(r record) bool {
	return r.Scenario == "cpu-qos1-1to1" && r.OfferedRate != nil && r.DeliverRate != nil && r.CPUPerMsg != nil && *r.DeliverRate > 0
}

// cpuSeries: median server CPU per message (µs) against the median
// delivered rate, per offered rate, for QoS 1 1 -> 1.
func cpuSeries(recs []record) []series {
	byBuild, latest := selectRuns(recs, isCPUPoint)
	type key struct {
		name string
		rate float64
	}
	xs, ys := map[key][]float64{}, map[key][]float64{}
	for _, r := range recs {
		if !isCPUPoint(r) {
			continue
		}
		name := seriesKey(r, "", byBuild, latest)
		if name == "" {
			continue
		}
		k := key{name, *r.OfferedRate}
		xs[k] = append(xs[k], *r.DeliverRate)
		ys[k] = append(ys[k], *r.CPUPerMsg)
	}
	pts := map[string][]point{}
	for k := range xs {
		pts[k.name] = append(pts[k.name], point{median(xs[k]), median(ys[k])})
	}
	return sortedSeries(pts)
}

func sortedSeries(pts map[string][]point) []series {
	out := make([]series, 0, len(pts))
	for name, p := range pts {
		sort.Slice(p, func(i, j int) bool { return p[i].X < p[j].X })
		out = append(out, series{Name: name, Points: p})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// median of a non-empty slice (sorted in place).
func median(v []float64) float64 {
	sort.Float64s(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

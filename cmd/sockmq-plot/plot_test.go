package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func loadFixture(t *testing.T) []record {
	t.Helper()
	f, err := os.Open("testdata/lean.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := readRecords(f)
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

// polylines parses an SVG document as XML (failing on malformed XML) and
// returns, per polyline's data-name, the number of points it draws.
func polylines(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(doc))
	out := map[string]int{}
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v\n%s", err, doc)
		}
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
		}
		if se.Name.Local != "polyline" {
			continue
		}
		var name, pts string
		for _, a := range se.Attr {
			switch a.Name.Local {
			case "data-name":
				name = a.Value
			case "points":
				pts = a.Value
			}
		}
		if _, dup := out[name]; dup {
			t.Errorf("two polylines named %q", name)
		}
		out[name] = len(strings.Fields(pts))
	}
	if root != "svg" {
		t.Fatalf("root element %q, want svg", root)
	}
	return out
}

func render(t *testing.T, c chart) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.render(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// TestChartsFromFixture: the fixture holds a "before" and an "after" run;
// each chart has one polyline per series (sockmq once per build, the
// reference servers from the latest run) with one point per measured size
// or rate.
func TestChartsFromFixture(t *testing.T) {
	recs := loadFixture(t)
	cs := charts(recs)
	got := polylines(t, render(t, cs["rss-vs-connections.svg"]))
	want := map[string]int{
		"sockmq MQTT (before)": 3, "sockmq MQTT (after)": 3, "mosquitto MQTT": 3,
		"sockmq SC sockets (before)": 2, "sockmq SC sockets (after)": 2, "socketcluster-server SC sockets": 2,
	}
	if len(got) != len(want) {
		t.Errorf("RSS chart series %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("RSS chart: series %q has %d points, want %d (all: %v)", name, got[name], n, got)
		}
	}
	got = polylines(t, render(t, cs["cpu-per-message.svg"]))
	want = map[string]int{"sockmq (before)": 5, "sockmq (after)": 5, "mosquitto": 5}
	if len(got) != len(want) {
		t.Errorf("CPU chart series %v, want %v", got, want)
	}
	for name, n := range want {
		if got[name] != n {
			t.Errorf("CPU chart: series %q has %d points, want %d", name, got[name], n)
		}
	}
}

// TestSeriesAreMedians: a point is the median of the repetitions, in MiB.
func TestSeriesAreMedians(t *testing.T) {
	for _, s := range rssSeries(loadFixture(t)) {
		if s.Name != "sockmq MQTT (after)" {
			continue
		}
		// rss_after_kib = 12000 + n*5 + rep for rep 1..3: median rep 2.
		if p := s.Points[1]; p.X != 5000 || p.Y != (12000+5000*5+2)/1024.0 {
			t.Fatalf("point %+v, want x 5000, y %v", p, (12000+5000*5+2)/1024.0)
		}
		return
	}
	t.Fatal("no series sockmq MQTT (after)")
}

func TestBadLineNamed(t *testing.T) {
	_, err := readRecords(strings.NewReader(`{"section":"lean"}` + "\nnot json\n"))
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want one naming line 2", err)
	}
}

// TestRunWritesFiles: the command writes both SVG files, and an empty
// chart (no points) is still a well-formed document.
func TestRunWritesFiles(t *testing.T) {
	dir := t.TempDir()
	var stderr bytes.Buffer
	if code := run([]string{"-in", "testdata/lean.jsonl", "-out", dir}, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	for _, name := range []string{"rss-vs-connections.svg", "cpu-per-message.svg"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(polylines(t, b)) == 0 {
			t.Errorf("%s has no series", name)
		}
	}
	if n := len(polylines(t, render(t, chart{Title: "empty <&>"}))); n != 0 {
		t.Errorf("empty chart has %d polylines", n)
	}
	if code := run([]string{"-in", filepath.Join(dir, "missing.jsonl"), "-out", dir}, &stderr); code != 1 {
		t.Errorf("missing input: exit %d, want 1", code)
	}
}

// A later run of only some sections (here: only the CPU section) must not
// take the reference servers' lines off the other chart, nor the earlier
// lines of the same sockmq build.
func TestPartialLaterRunKeepsOtherChartsLines(t *testing.T) {
	recs := loadFixture(t)
	names := func(ss []series) map[string]bool {
		m := map[string]bool{}
		for _, s := range ss {
			m[s.Name] = true
		}
		return m
	}
	rssBefore, cpuBefore := names(rssSeries(recs)), names(cpuSeries(recs))
	var later []record
	for _, r := range recs {
		if r.Scenario == "cpu-qos1-1to1" {
			r.Run = "99991231T000000Z"
			later = append(later, r)
		}
	}
	if len(later) == 0 {
		t.Fatal("fixture has no CPU points")
	}
	all := append(append([]record(nil), recs...), later...)
	rssAfter, cpuAfter := names(rssSeries(all)), names(cpuSeries(all))
	if len(rssBefore) == 0 {
		t.Fatal("fixture draws no RSS lines")
	}
	for n := range rssBefore {
		if !rssAfter[n] {
			t.Errorf("RSS line %q gone after a later CPU-only run", n)
		}
	}
	for n := range cpuBefore {
		if !cpuAfter[n] {
			t.Errorf("CPU line %q gone after a later CPU-only run", n)
		}
	}
}

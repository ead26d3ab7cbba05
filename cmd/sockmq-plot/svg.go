package main

import (
	"fmt"
	"html"
	"io"
	"math"
	"strconv"
	"strings"
)

// chart is a line chart: one polyline (with a marker per point) per
// series, axes with ticks, a legend.
type chart struct {
	Title, XLabel, YLabel string
	LogX                  bool // logarithmic x axis (base 10)
	Series                []series
}

const (
	svgW, svgH                   = 880, 460
	padL, padR, padT, padB       = 70, 350, 40, 56
	plotW, plotH                 = svgW - padL - padR, svgH - padT - padB
	legendX, legendY, legendLine = svgW - padR + 16, padT + 10, 20
)

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"}

// render writes the chart as a standalone SVG document.
func (c chart) render(w io.Writer) error {
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range c.Series {
		for _, p := range s.Points {
			x := c.xval(p.X)
			xmin, xmax, ymax = math.Min(xmin, x), math.Max(xmax, x), math.Max(ymax, p.Y)
		}
	}
	if math.IsInf(xmin, 1) { // no points: empty axes
		xmin, xmax, ymax = 0, 1, 1
	}
	if !c.LogX {
		xmin = 0
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ymax = niceCeil(ymax)
	if ymax <= 0 {
		ymax = 1
	}
	if c.LogX {
		xmin, xmax = math.Floor(xmin), math.Ceil(xmax)
	} else {
		xmax = niceCeil(xmax)
	}
	px := func(x float64) float64 { return padL + (c.xval(x)-xmin)/(xmax-xmin)*plotW }
	pxRaw := func(v float64) float64 { return padL + (v-xmin)/(xmax-xmin)*plotW }
	py := func(y float64) float64 { return padT + plotH - y/ymax*plotH }

	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", svgW, svgH, svgW, svgH)
	fmt.Fprintf(&b, `<rect x="0" y="0" width="%d" height="%d" fill="white"/>`+"\n", svgW, svgH)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", padL, esc(c.Title))
	// grid and ticks
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", padL, py(y), padL+plotW, py(y))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", padL-6, py(y)+4, num(y))
	}
	for _, v := range c.xticks(xmin, xmax) {
		x := pxRaw(v)
		label := num(v)
		if c.LogX {
			label = num(math.Round(math.Pow(10, v)))
		}
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, padT, x, padT+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, padT+plotH+18, label)
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#333"/>`+"\n", padL, padT, plotW, plotH)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">%s</text>`+"\n", padL+plotW/2, svgH-14, esc(c.XLabel))
	fmt.Fprintf(&b, `<text x="16" y="%d" text-anchor="middle" transform="rotate(-90 16 %d)">%s</text>`+"\n", padT+plotH/2, padT+plotH/2, esc(c.YLabel))
	// series
	for i, s := range c.Series {
		color := palette[i%len(palette)]
		pts := make([]string, len(s.Points))
		for j, p := range s.Points {
			pts[j] = fmt.Sprintf("%.1f,%.1f", px(p.X), py(p.Y))
		}
		fmt.Fprintf(&b, `<polyline class="series" data-name="%s" fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n",
			esc(s.Name), color, strings.Join(pts, " "))
		for _, p := range s.Points {
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"><title>%s: %s, %s</title></circle>`+"\n",
				px(p.X), py(p.Y), color, esc(s.Name), num(p.X), num(p.Y))
		}
		ly := legendY + i*legendLine
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"/>`+"\n", legendX, ly, legendX+22, ly, color)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", legendX+28, ly+4, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func (c chart) xval(x float64) float64 {
	if c.LogX {
		return math.Log10(math.Max(x, 1e-9))
	}
	return x
}

// xticks: on a log axis every power of ten and its 2x and 5x, else six
// even steps.
func (c chart) xticks(lo, hi float64) []float64 {
	var out []float64
	if c.LogX {
		for e := lo; e <= hi; e++ {
			for _, m := range []float64{1, 2, 5} {
				if v := e + math.Log10(m); v <= hi {
					out = append(out, v)
				}
			}
		}
		return out
	}
	for i := 0; i <= 5; i++ {
		out = append(out, lo+(hi-lo)*float64(i)/5)
	}
	return out
}

// niceCeil rounds v up to 1, 2, 2.5 or 5 times a power of ten, so that
// five ticks fall on round numbers.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 0
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func esc(s string) string { return html.EscapeString(s) }

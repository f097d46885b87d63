// Package svgplot draws time series as a hand-written SVG: a column of
// panels that share their axes, each with lines on a left axis (linear or
// logarithmic), bars on a right axis, shaded spans and vertical marks. It
// is what the benchmarks need to show latency and failures over time
// around restarts, and nothing more: no dependencies, no interactivity.
//
// Panels share the x range and both y ranges, so that panels can be
// compared by eye. A NaN (or, on a logarithmic axis, a value ≤ 0) is a gap
// in a line.
package svgplot

import (
	"bytes"
	"cmp"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Chart is a titled column of panels over one x axis.
type Chart struct {
	Title       string
	Note        string // lines under the title, separated by "\n"
	XLabel      string
	YLabel      string // the left axis
	BarLabel    string // the right axis
	MarkLabel   string // the legend's name for the marks; "mark" if empty
	LogY        bool   // the left axis is logarithmic
	Width       int    // pixels; 0 means 960
	PanelHeight int    // pixels; 0 means 170
	Panels      []Panel
}

// Panel is one plot of the column.
type Panel struct {
	Title string
	// X holds the x of every point, ascending; Lines and Bars have one
	// value per x. A bar spans from its x to the next (the last one as
	// wide as the one before it).
	X     []float64
	Lines []Line
	Bars  *Series
	// Shade holds x spans drawn as a light background, e.g. a measurement
	// window.
	Shade [][2]float64
	// Marks holds the x of vertical lines, e.g. restart signals.
	Marks []float64
}

// Line is a series drawn as a line on the left axis.
type Line struct {
	Series
	Dashed bool
}

// Series is a named sequence of values, one per x, in a CSS colour.
type Series struct {
	Name  string
	Color string
	Y     []float64
}

// ErrNoData is returned for a chart without panels or a panel without x.
var ErrNoData = errors.New("svgplot: nothing to draw")

// Layout constants, in pixels.
const (
	defaultWidth       = 960
	defaultPanelHeight = 170
	marginLeft         = 64
	marginRight        = 56
	titleHeight        = 46 // the title and one line of note
	noteHeight         = 14 // each further line of note
	legendHeight       = 22
	panelTitleHeight   = 18
	panelGap           = 14
	xAxisHeight        = 36
)

// frame is the data-to-pixel mapping shared by the panels.
type frame struct {
	x0, x1   float64 // x range
	y0, y1   float64 // left axis range, in log10 units when log
	b1       float64 // right axis maximum
	log      bool
	left     float64 // plot area, horizontally
	plotW    float64
	hasBars  bool
	hasLines bool
}

func (f *frame) px(x float64) float64 { return f.left + (x-f.x0)/(f.x1-f.x0)*f.plotW }

// py maps a left-axis value into a panel whose plot area starts at top
// and is h high; ok is false for a gap.
func (f *frame) py(y, top, h float64) (float64, bool) {
	if math.IsNaN(y) || math.IsInf(y, 0) {
		return 0, false
	}
	if f.log {
		if y <= 0 {
			return 0, false
		}
		y = math.Log10(y)
	}
	y = min(max(y, f.y0), f.y1)
	return top + h - (y-f.y0)/(f.y1-f.y0)*h, true
}

// WriteSVG validates the chart and writes it as a standalone SVG document.
func (c *Chart) WriteSVG(w io.Writer) error {
	if len(c.Panels) == 0 {
		return fmt.Errorf("%w: no panels", ErrNoData)
	}
	for i, p := range c.Panels {
		if err := p.validate(); err != nil {
			return fmt.Errorf("svgplot: panel %d (%q): %w", i, p.Title, err)
		}
	}
	width := cmp.Or(c.Width, defaultWidth)
	ph := cmp.Or(c.PanelHeight, defaultPanelHeight)
	if width < 200 || ph < 60 {
		return fmt.Errorf("svgplot: width %d and panel height %d are too small (at least 200 and 60)", width, ph)
	}
	f := c.frame(float64(width))
	var notes []string
	if c.Note != "" {
		notes = strings.Split(c.Note, "\n")
	}
	head := titleHeight + noteHeight*max(len(notes)-1, 0)
	height := head + legendHeight + len(c.Panels)*(panelTitleHeight+ph+panelGap) + xAxisHeight

	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n",
		width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	text(&b, float64(marginLeft), 20, "start", "14", "bold", c.Title)
	for i, n := range notes {
		text(&b, float64(marginLeft), float64(37+noteHeight*i), "start", "11", "normal", n)
	}
	c.legend(&b, f, float64(head+14))

	top := float64(head + legendHeight)
	for _, p := range c.Panels {
		c.panel(&b, f, p, top+panelTitleHeight, float64(ph))
		top += float64(panelTitleHeight + ph + panelGap)
	}
	// The x axis label under the last panel.
	text(&b, f.left+f.plotW/2, top+xAxisHeight-14, "middle", "11", "normal", c.XLabel)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func (p *Panel) validate() error {
	if len(p.X) == 0 {
		return ErrNoData
	}
	for i := 1; i < len(p.X); i++ {
		if !(p.X[i] > p.X[i-1]) {
			return fmt.Errorf("x is not ascending at index %d (%v after %v)", i, p.X[i], p.X[i-1])
		}
	}
	for _, x := range p.X {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("x holds %v", x)
		}
	}
	series := make([]*Series, 0, len(p.Lines)+1)
	for i := range p.Lines {
		series = append(series, &p.Lines[i].Series)
	}
	if p.Bars != nil {
		series = append(series, p.Bars)
	}
	for _, s := range series {
		if len(s.Y) != len(p.X) {
			return fmt.Errorf("series %q has %d values for %d x", s.Name, len(s.Y), len(p.X))
		}
		if strings.ContainsAny(s.Color, `"<>&'`) {
			return fmt.Errorf("series %q: colour %q is not a plain CSS colour", s.Name, s.Color)
		}
	}
	return nil
}

// frame computes the shared ranges.
func (c *Chart) frame(width float64) *frame {
	f := &frame{log: c.LogY, left: marginLeft, plotW: width - marginLeft - marginRight}
	f.x0, f.x1 = math.Inf(1), math.Inf(-1)
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, p := range c.Panels {
		f.x0 = min(f.x0, p.X[0])
		f.x1 = max(f.x1, p.X[len(p.X)-1]+barWidth(p.X))
		for _, l := range p.Lines {
			f.hasLines = true
			for _, y := range l.Y {
				if math.IsNaN(y) || math.IsInf(y, 0) || c.LogY && y <= 0 {
					continue
				}
				lo, hi = min(lo, y), max(hi, y)
			}
		}
		if p.Bars != nil {
			f.hasBars = true
			for _, y := range p.Bars.Y {
				if !math.IsNaN(y) && !math.IsInf(y, 0) {
					f.b1 = max(f.b1, y)
				}
			}
		}
	}
	if f.x1 <= f.x0 {
		f.x1 = f.x0 + 1
	}
	switch {
	case math.IsInf(lo, 1): // no line values at all
		f.y0, f.y1 = 0, 1
	case c.LogY:
		f.y0, f.y1 = math.Floor(math.Log10(lo)), math.Ceil(math.Log10(hi))
		if f.y1 <= f.y0 {
			f.y1 = f.y0 + 1
		}
	default:
		f.y0, f.y1 = 0, niceMax(hi)
	}
	f.b1 = niceMax(f.b1)
	return f
}

// barWidth is the width of the last bar: the last step of x, or 1.
func barWidth(x []float64) float64 {
	if len(x) < 2 {
		return 1
	}
	return x[len(x)-1] - x[len(x)-2]
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten; at least 1.
func niceMax(v float64) float64 {
	if !(v > 1) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func (c *Chart) legend(b *bytes.Buffer, f *frame, y float64) {
	x := f.left
	seen := map[string]bool{}
	item := func(name, color string, bar, dashed bool) {
		if name == "" || seen[name] {
			return
		}
		seen[name] = true
		if bar {
			fmt.Fprintf(b, `<rect x="%s" y="%s" width="14" height="9" fill="%s" fill-opacity="0.7"/>`+"\n",
				num(x), num(y-8), color)
		} else {
			fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="%s" stroke-width="2"%s/>`+"\n",
				num(x), num(y-4), num(x+14), num(y-4), color, dash(dashed))
		}
		text(b, x+18, y, "start", "11", "normal", name)
		x += 18 + float64(7*len([]rune(name))) + 16
	}
	for _, p := range c.Panels {
		for _, l := range p.Lines {
			item(l.Name, l.Color, false, l.Dashed)
		}
		if p.Bars != nil {
			item(p.Bars.Name, p.Bars.Color, true, false)
		}
	}
	if hasMarks(c.Panels) {
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#555" stroke-dasharray="2,2"/>`+"\n",
			num(x), num(y-9), num(x), num(y+1))
		text(b, x+6, y, "start", "11", "normal", cmp.Or(c.MarkLabel, "mark"))
	}
}

func hasMarks(ps []Panel) bool {
	for _, p := range ps {
		if len(p.Marks) > 0 {
			return true
		}
	}
	return false
}

// panel draws one panel whose plot area starts at top and is h high.
func (c *Chart) panel(b *bytes.Buffer, f *frame, p Panel, top, h float64) {
	text(b, f.left, top-5, "start", "12", "bold", p.Title)
	fmt.Fprintf(b, `<g class="panel">`+"\n")
	fmt.Fprintf(b, `<rect x="%s" y="%s" width="%s" height="%s" fill="#fafafa" stroke="#bbb"/>`+"\n",
		num(f.left), num(top), num(f.plotW), num(h))
	for _, s := range p.Shade {
		x0, x1 := f.px(max(s[0], f.x0)), f.px(min(s[1], f.x1))
		if x1 > x0 {
			fmt.Fprintf(b, `<rect class="shade" x="%s" y="%s" width="%s" height="%s" fill="#e8eef8"/>`+"\n",
				num(x0), num(top), num(x1-x0), num(h))
		}
	}
	c.leftAxis(b, f, top, h)
	if f.hasBars {
		rightAxis(b, f, c.BarLabel, top, h)
	}
	xAxis(b, f, top+h)
	if p.Bars != nil {
		for i, y := range p.Bars.Y {
			if !(y > 0) || math.IsInf(y, 0) {
				continue
			}
			x0 := f.px(p.X[i])
			next := p.X[i] + barWidth(p.X)
			if i+1 < len(p.X) {
				next = p.X[i+1]
			}
			bh := min(y/f.b1, 1) * h
			fmt.Fprintf(b, `<rect class="bar" x="%s" y="%s" width="%s" height="%s" fill="%s" fill-opacity="0.7"/>`+"\n",
				num(x0), num(top+h-bh), num(max(f.px(next)-x0-0.5, 0.5)), num(bh), p.Bars.Color)
		}
	}
	for _, l := range p.Lines {
		for _, pts := range segments(f, p.X, l.Y, top, h) {
			if len(pts) == 1 { // a lone point between gaps
				fmt.Fprintf(b, `<circle class="point" cx="%s" cy="%s" r="1.5" fill="%s"/>`+"\n",
					strings.Split(pts[0], ",")[0], strings.Split(pts[0], ",")[1], l.Color)
				continue
			}
			fmt.Fprintf(b, `<polyline fill="none" stroke="%s" stroke-width="1.3"%s points="%s"/>`+"\n",
				l.Color, dash(l.Dashed), strings.Join(pts, " "))
		}
	}
	for _, m := range p.Marks {
		if m < f.x0 || m > f.x1 {
			continue
		}
		fmt.Fprintf(b, `<line class="mark" x1="%s" y1="%s" x2="%s" y2="%s" stroke="#555" stroke-width="0.8" stroke-dasharray="2,2"/>`+"\n",
			num(f.px(m)), num(top), num(f.px(m)), num(top+h))
	}
	b.WriteString("</g>\n")
}

// segments splits a line at its gaps; each point is "x,y" in pixels. A
// point is drawn at the middle of its bucket.
func segments(f *frame, xs, ys []float64, top, h float64) [][]string {
	var out [][]string
	var cur []string
	for i, y := range ys {
		py, ok := f.py(y, top, h)
		if !ok {
			if len(cur) > 0 {
				out = append(out, cur)
				cur = nil
			}
			continue
		}
		next := xs[i] + barWidth(xs)
		if i+1 < len(xs) {
			next = xs[i+1]
		}
		cur = append(cur, num(f.px((xs[i]+next)/2))+","+num(py))
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (c *Chart) leftAxis(b *bytes.Buffer, f *frame, top, h float64) {
	if !f.hasLines {
		return
	}
	var ticks []float64
	if f.log {
		for e := f.y0; e <= f.y1; e++ {
			ticks = append(ticks, e)
		}
	} else {
		ticks = linearTicks(f.y1)
	}
	for _, t := range ticks {
		v := t
		if f.log {
			v = math.Pow(10, t)
		}
		y, _ := f.py(v, top, h)
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#ddd"/>`+"\n",
			num(f.left), num(y), num(f.left+f.plotW), num(y))
		text(b, f.left-4, y+4, "end", "10", "normal", label(v))
	}
	mid := top + h/2
	fmt.Fprintf(b, `<text x="14" y="%s" text-anchor="middle" transform="rotate(-90 14 %s)">%s</text>`+"\n",
		num(mid), num(mid), esc(c.YLabel))
}

func rightAxis(b *bytes.Buffer, f *frame, name string, top, h float64) {
	right := f.left + f.plotW
	for _, t := range linearTicks(f.b1) {
		y := top + h - t/f.b1*h
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#b33"/>`+"\n",
			num(right), num(y), num(right+3), num(y))
		text(b, right+5, y+4, "start", "10", "normal", label(t))
	}
	mid := top + h/2
	x := right + 44
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="middle" fill="#b33" transform="rotate(90 %s %s)">%s</text>`+"\n",
		num(x), num(mid), num(x), num(mid), esc(name))
}

func xAxis(b *bytes.Buffer, f *frame, y float64) {
	for _, t := range linearTicksFrom(f.x0, f.x1) {
		x := f.px(t)
		fmt.Fprintf(b, `<line x1="%s" y1="%s" x2="%s" y2="%s" stroke="#999"/>`+"\n", num(x), num(y), num(x), num(y+3))
		text(b, x, y+13, "middle", "10", "normal", label(t))
	}
}

// linearTicks returns about five nice ticks from 0 to hi.
func linearTicks(hi float64) []float64 { return linearTicksFrom(0, hi) }

func linearTicksFrom(lo, hi float64) []float64 {
	if !(hi > lo) {
		return []float64{lo}
	}
	raw := (hi - lo) / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	step := p
	for _, m := range []float64{1, 2, 5, 10} {
		if raw <= m*p {
			step = m * p
			break
		}
	}
	var ts []float64
	for t := math.Ceil(lo/step) * step; t <= hi+step*1e-9; t += step {
		ts = append(ts, t)
	}
	return ts
}

// label formats a tick value compactly.
func label(v float64) string {
	if v != 0 && math.Abs(v) < 1 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func text(b *bytes.Buffer, x, y float64, anchor, size, weight, s string) {
	if s == "" {
		return
	}
	fmt.Fprintf(b, `<text x="%s" y="%s" text-anchor="%s" font-size="%s" font-weight="%s">%s</text>`+"\n",
		num(x), num(y), anchor, size, weight, esc(s))
}

func dash(d bool) string {
	if d {
		return ` stroke-dasharray="5,3"`
	}
	return ""
}

func esc(s string) string {
	var b strings.Builder
	xml.EscapeText(&b, []byte(s))
	return b.String()
}

// num formats a pixel coordinate with at most one decimal.
func num(v float64) string { return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) }

// Package timeplot draws the benchmarks' time series with gonum.org/v1/plot:
// a column of panels, one per run, that share their axes; each panel is a
// row of two plots over the same x, lines on the left (latency, linear or
// logarithmic) and bars on the right (failures), both with shaded spans
// and vertical marks (the measurement window, the restart signals).
//
// gonum/plot draws the axes, ticks, legends and text, and writes SVG or
// PNG; this package only lays the runs out. A NaN (or, on a logarithmic
// axis, a value ≤ 0) is a gap in a line.
package timeplot

import (
	"errors"
	"fmt"
	"image/color"
	"io"
	"math"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/font"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/text"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
	"gonum.org/v1/plot/vg/vgsvg"
)

// Chart is a titled column of panels over one x axis.
type Chart struct {
	Title     string
	Note      string // lines under the title, separated by "\n"
	XLabel    string
	YLabel    string // the lines' axis
	BarLabel  string // the bars' axis
	MarkLabel string // the legend's name for the marks; "mark" if empty
	LogY      bool   // the lines' axis is logarithmic
	Panels    []Panel
}

// Panel is one run: a row of the column.
type Panel struct {
	Title string
	// X holds the x of every point, ascending; Lines and Bars have one
	// value per x. A bar spans from its x to the next (the last one as
	// wide as the one before it).
	X     []float64
	Lines []Line
	Bars  *Series
	Shade [][2]float64 // x spans drawn as a light background
	Marks []float64    // the x of vertical lines
}

// Line is a series drawn as a line.
type Line struct {
	Series
	Dashed bool
}

// Series is a named sequence of values, one per x.
type Series struct {
	Name  string
	Color color.Color
	Y     []float64
}

// ErrNoData is returned for a chart without panels or a panel without x.
var ErrNoData = errors.New("timeplot: nothing to draw")

// Sizes of the drawing.
const (
	width       = 26 * vg.Centimeter
	panelHeight = 5 * vg.Centimeter
	headHeight  = 1.2 * vg.Centimeter // the title and the note's first line
	noteLine    = 0.45 * vg.Centimeter
)

var (
	shadeColor = color.RGBA{R: 0xee, G: 0xee, B: 0xee, A: 0xff}
	markColor  = color.RGBA{R: 0x55, G: 0x55, B: 0x55, A: 0xff}
)

// WriteSVG writes the chart as an SVG document.
func (c *Chart) WriteSVG(w io.Writer) error {
	return c.write(w, func(wd, ht vg.Length) (vg.CanvasWriterTo, draw.Canvas) {
		cv := vgsvg.New(wd, ht)
		return cv, draw.New(cv)
	})
}

// WritePNG writes the chart as a PNG image.
func (c *Chart) WritePNG(w io.Writer) error {
	return c.write(w, func(wd, ht vg.Length) (vg.CanvasWriterTo, draw.Canvas) {
		cv := vgimg.PngCanvas{Canvas: vgimg.NewWith(vgimg.UseWH(wd, ht), vgimg.UseDPI(96))}
		return cv, draw.New(cv)
	})
}

func (c *Chart) write(w io.Writer, canvas func(wd, ht vg.Length) (vg.CanvasWriterTo, draw.Canvas)) error {
	if len(c.Panels) == 0 {
		return fmt.Errorf("%w: no panels", ErrNoData)
	}
	for i, p := range c.Panels {
		if err := p.validate(); err != nil {
			return fmt.Errorf("timeplot: panel %d (%q): %w", i, p.Title, err)
		}
	}
	var notes []string
	if c.Note != "" {
		notes = strings.Split(c.Note, "\n")
	}
	head := headHeight + noteLine*vg.Length(len(notes))
	cv, dc := canvas(width, head+panelHeight*vg.Length(len(c.Panels)))

	dc.FillText(textStyle(13, draw.XLeft), vg.Point{X: dc.Min.X + vg.Centimeter/2, Y: dc.Max.Y - vg.Centimeter/3}, c.Title)
	for i, n := range notes {
		y := dc.Max.Y - headHeight + noteLine/2 - noteLine*vg.Length(i)
		dc.FillText(textStyle(9, draw.XLeft), vg.Point{X: dc.Min.X + vg.Centimeter/2, Y: y}, n)
	}
	body := draw.Crop(dc, 0, 0, 0, -head)

	rows, err := c.plots()
	if err != nil {
		return err
	}
	tiles := draw.Tiles{Rows: len(rows), Cols: 2, PadX: vg.Centimeter / 2, PadY: vg.Centimeter / 4,
		PadTop: vg.Centimeter / 4, PadBottom: vg.Centimeter / 4, PadLeft: vg.Centimeter / 4, PadRight: vg.Centimeter / 4}
	for i, cs := range plot.Align(rows, tiles, body) {
		for j, pc := range cs {
			rows[i][j].Draw(pc)
		}
	}
	_, err = cv.WriteTo(w)
	return err
}

func textStyle(size vg.Length, x draw.XAlignment) text.Style {
	return text.Style{Color: color.Black, Font: font.From(plot.DefaultFont, size), XAlign: x, YAlign: draw.YCenter,
		Handler: plot.DefaultTextHandler}
}

// plots builds a row of two plots per panel, sharing the x range, the
// lines' range and the bars' range.
func (c *Chart) plots() ([][]*plot.Plot, error) {
	xr, lr, br := span(), span(), span()
	br.add(0)
	for _, p := range c.Panels {
		xr.add(p.X[0])
		xr.add(p.X[len(p.X)-1] + barWidth(p.X))
		for _, l := range p.Lines {
			for _, y := range l.Y {
				if ok(y, c.LogY) {
					lr.add(y)
				}
			}
		}
		if p.Bars != nil {
			for _, y := range p.Bars.Y {
				if ok(y, false) {
					br.add(y)
				}
			}
		}
	}
	if lr.empty() {
		lr.add(1)
	}
	lo, hi := lr.lo, lr.hi
	if c.LogY {
		lo, hi = math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
		if hi <= lo {
			hi = lo * 10
		}
	} else {
		lo, hi = 0, max(hi*1.1, 1)
	}
	barHi := max(br.hi*1.1, 1)

	var rows [][]*plot.Plot
	for i, p := range c.Panels {
		left, right := plot.New(), plot.New()
		left.Title.Text = p.Title
		left.Y.Label.Text, right.Y.Label.Text = c.YLabel, c.BarLabel
		if i == len(c.Panels)-1 {
			left.X.Label.Text, right.X.Label.Text = c.XLabel, c.XLabel
		}
		for _, pl := range []*plot.Plot{left, right} {
			pl.Add(&shade{spans: p.Shade}, plotter.NewGrid())
		}
		for _, l := range p.Lines {
			parts, err := segments(p.X, l.Y, c.LogY)
			if err != nil {
				return nil, err
			}
			style := draw.LineStyle{Color: l.Color, Width: vg.Points(1.2)}
			if l.Dashed {
				style.Dashes = []vg.Length{vg.Points(5), vg.Points(3)}
			}
			for k, xy := range parts {
				if len(xy) == 1 {
					sc, err := plotter.NewScatter(xy)
					if err != nil {
						return nil, err
					}
					sc.GlyphStyle.Color, sc.GlyphStyle.Radius, sc.GlyphStyle.Shape = l.Color, vg.Points(1.5), draw.CircleGlyph{}
					left.Add(sc)
					continue
				}
				ln, err := plotter.NewLine(xy)
				if err != nil {
					return nil, err
				}
				ln.LineStyle = style
				left.Add(ln)
				if i == 0 && k == 0 {
					left.Legend.Add(l.Name, ln)
				}
			}
		}
		if p.Bars != nil {
			h := &plotter.Histogram{Width: barWidth(p.X), FillColor: p.Bars.Color}
			for k, y := range p.Bars.Y {
				if ok(y, false) && y > 0 {
					h.Bins = append(h.Bins, plotter.HistogramBin{Min: p.X[k], Max: p.X[k] + barWidth(p.X), Weight: y})
				}
			}
			right.Add(h)
			if i == 0 {
				right.Legend.Add(p.Bars.Name, h)
			}
		}
		m := &marks{xs: p.Marks}
		left.Add(m)
		right.Add(m)
		if i == 0 && len(p.Marks) > 0 {
			name := c.MarkLabel
			if name == "" {
				name = "mark"
			}
			left.Legend.Add(name, m)
		}
		left.Legend.Top, right.Legend.Top = true, true
		left.X.Min, left.X.Max, right.X.Min, right.X.Max = xr.lo, xr.hi, xr.lo, xr.hi
		left.Y.Min, left.Y.Max = lo, hi
		right.Y.Min, right.Y.Max = 0, barHi
		if c.LogY {
			left.Y.Scale, left.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
		}
		rows = append(rows, []*plot.Plot{left, right})
	}
	return rows, nil
}

func (p *Panel) validate() error {
	if len(p.X) == 0 {
		return ErrNoData
	}
	for i := 1; i < len(p.X); i++ {
		if !(p.X[i] > p.X[i-1]) {
			return fmt.Errorf("x is not ascending at %d", i)
		}
	}
	for _, l := range p.Lines {
		if len(l.Y) != len(p.X) {
			return fmt.Errorf("line %q has %d values for %d x", l.Name, len(l.Y), len(p.X))
		}
	}
	if p.Bars != nil && len(p.Bars.Y) != len(p.X) {
		return fmt.Errorf("bars %q have %d values for %d x", p.Bars.Name, len(p.Bars.Y), len(p.X))
	}
	return nil
}

// ok tells a value that can be drawn.
func ok(y float64, log bool) bool {
	return !math.IsNaN(y) && !math.IsInf(y, 0) && (!log || y > 0)
}

// segments splits a line at its gaps.
func segments(xs, ys []float64, log bool) ([]plotter.XYs, error) {
	var parts []plotter.XYs
	var cur plotter.XYs
	for i, y := range ys {
		if !ok(y, log) {
			if len(cur) > 0 {
				parts, cur = append(parts, cur), nil
			}
			continue
		}
		cur = append(cur, plotter.XY{X: xs[i], Y: y})
	}
	if len(cur) > 0 {
		parts = append(parts, cur)
	}
	return parts, nil
}

// barWidth is the spacing of xs: a bar's width.
func barWidth(xs []float64) float64 {
	if len(xs) < 2 {
		return 1
	}
	return xs[len(xs)-1] - xs[len(xs)-2]
}

type rng struct{ lo, hi float64 }

func span() *rng { return &rng{math.Inf(1), math.Inf(-1)} }

func (r *rng) add(v float64) { r.lo, r.hi = min(r.lo, v), max(r.hi, v) }

func (r *rng) empty() bool { return r.lo > r.hi }

// shade draws x spans across the whole height of a plot. It has no data
// range: it never widens the axes.
type shade struct{ spans [][2]float64 }

func (s *shade) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, sp := range s.spans {
		lo, hi := max(sp[0], p.X.Min), min(sp[1], p.X.Max)
		if !(hi > lo) {
			continue
		}
		x0, x1 := trX(lo), trX(hi)
		c.FillPolygon(shadeColor, []vg.Point{{X: x0, Y: c.Min.Y}, {X: x1, Y: c.Min.Y}, {X: x1, Y: c.Max.Y}, {X: x0, Y: c.Max.Y}})
	}
}

// marks draws a dashed vertical line at each x within the axis.
type marks struct{ xs []float64 }

var markStyle = draw.LineStyle{Color: markColor, Width: vg.Points(0.7), Dashes: []vg.Length{vg.Points(3), vg.Points(2)}}

func (m *marks) Plot(c draw.Canvas, p *plot.Plot) {
	trX, _ := p.Transforms(&c)
	for _, x := range m.xs {
		if x < p.X.Min || x > p.X.Max {
			continue
		}
		c.StrokeLine2(markStyle, trX(x), c.Min.Y, trX(x), c.Max.Y)
	}
}

// Thumbnail draws the marks' legend entry.
func (m *marks) Thumbnail(c *draw.Canvas) {
	x := (c.Min.X + c.Max.X) / 2
	c.StrokeLine2(markStyle, x, c.Min.Y, x, c.Max.Y)
}

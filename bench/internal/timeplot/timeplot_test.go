package timeplot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"image/color"
	"image/png"
	"io"
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var (
	blue   = color.RGBA{B: 0xff, A: 0xff}
	orange = color.RGBA{R: 0xff, G: 0x7f, A: 0xff}
	red    = color.RGBA{R: 0xff, A: 0xff}
)

func chart() *Chart {
	nan := math.NaN()
	return &Chart{
		Title: "restarts <under> load & more", Note: "64 clients\nsecond line", XLabel: "seconds", YLabel: "latency (ms)",
		BarLabel: "failures per 100 ms", MarkLabel: "restart signal", LogY: true,
		Panels: []Panel{
			{
				Title: "handoff",
				X:     []float64{0, 0.1, 0.2, 0.3, 0.4},
				Lines: []Line{
					{Series: Series{Name: "p50", Color: blue, Y: []float64{0.2, 0.3, nan, 0.25, 0.2}}},
					{Series: Series{Name: "p99", Color: orange, Y: []float64{1, 2, 3, 4, 5}}, Dashed: true},
				},
				Bars:  &Series{Name: "failures", Color: red, Y: []float64{0, 0, 0, 0, 0}},
				Shade: [][2]float64{{0.1, 0.3}},
				Marks: []float64{0.1, 0.2},
			},
			{
				Title: "nginx",
				X:     []float64{0, 0.1, 0.2, 0.3, 0.4},
				Lines: []Line{
					{Series: Series{Name: "p50", Color: blue, Y: []float64{0.1, 0, 0.3, nan, 0.2}}},
				},
				Bars:  &Series{Name: "failures", Color: red, Y: []float64{0, 64, 0, 128, 0}},
				Marks: []float64{0.1, 0.3, 99}, // 99 is off the axis: not drawn
			},
		},
	}
}

// TestWriteSVG: a well-formed document with the chart's text escaped, the
// panels' titles and the legend's names, and no NaN reaching it.
func TestWriteSVG(t *testing.T) {
	var b bytes.Buffer
	if err := chart().WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(bytes.NewReader(b.Bytes()))
	var texts []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
		if cd, ok := tok.(xml.CharData); ok && strings.TrimSpace(string(cd)) != "" {
			texts = append(texts, string(cd))
		}
	}
	all := strings.Join(texts, "|")
	for _, want := range []string{"restarts <under> load & more", "second line", "handoff", "nginx", "p50", "p99",
		"restart signal", "failures", "seconds"} {
		if !strings.Contains(all, want) {
			t.Errorf("the document's text lacks %q: %s", want, all)
		}
	}
	if s := b.String(); strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Error("a NaN or Inf reached the document")
	}
}

// TestWritePNG: the same chart as a PNG image of the chart's size.
func TestWritePNG(t *testing.T) {
	var b bytes.Buffer
	if err := chart().WritePNG(&b); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if r := img.Bounds(); r.Dx() < 500 || r.Dy() < 300 {
		t.Errorf("image %v: too small", r)
	}
}

// TestSegments: a line breaks at NaN and, on a log axis, at values ≤ 0.
func TestSegments(t *testing.T) {
	nan := math.NaN()
	xs := []float64{0, 1, 2, 3, 4, 5}
	ys := []float64{1, 2, nan, 3, 0, 4}
	for _, c := range []struct {
		log  bool
		want []int // points per segment
	}{{false, []int{2, 3}}, {true, []int{2, 1, 1}}} {
		parts, err := segments(xs, ys, c.log)
		if err != nil {
			t.Fatal(err)
		}
		var got []int
		for _, p := range parts {
			got = append(got, len(p))
		}
		if len(got) != len(c.want) || !equal(got, c.want) {
			t.Errorf("log %v: segments of %v points, want %v", c.log, got, c.want)
		}
	}
}

func equal(a, b []int) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return len(a) == len(b)
}

// TestBadCharts: nothing to draw, or data that does not fit its x.
func TestBadCharts(t *testing.T) {
	if err := (&Chart{}).WriteSVG(io.Discard); !errors.Is(err, ErrNoData) {
		t.Errorf("no panels: %v", err)
	}
	if err := (&Chart{Panels: []Panel{{Title: "empty"}}}).WriteSVG(io.Discard); !errors.Is(err, ErrNoData) {
		t.Errorf("a panel without x: %v", err)
	}
	for _, p := range []Panel{
		{X: []float64{0, 1}, Lines: []Line{{Series: Series{Name: "short", Y: []float64{1}}}}},
		{X: []float64{0, 1}, Bars: &Series{Name: "long", Y: []float64{1, 2, 3}}},
		{X: []float64{1, 0}},
	} {
		if err := (&Chart{Panels: []Panel{p}}).WriteSVG(io.Discard); err == nil || errors.Is(err, ErrNoData) {
			t.Errorf("panel %+v: %v", p, err)
		}
	}
	// A linear chart with lines only, or bars only, draws.
	lin := &Chart{Title: "linear", Panels: []Panel{
		{X: []float64{0, 1}, Lines: []Line{{Series: Series{Name: "a", Color: blue, Y: []float64{0, 3}}}}},
		{X: []float64{0, 1}, Bars: &Series{Name: "b", Color: red, Y: []float64{0, 0}}},
	}}
	if err := lin.WriteSVG(io.Discard); err != nil {
		t.Errorf("linear: %v", err)
	}
}

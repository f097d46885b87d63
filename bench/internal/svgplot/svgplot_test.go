package svgplot

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// elements parses doc as XML, failing the test if it is not well formed,
// and counts its elements by name and by "name.class".
func elements(t *testing.T, doc []byte) map[string]int {
	t.Helper()
	n := map[string]int{}
	d := xml.NewDecoder(bytes.NewReader(doc))
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			return n
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		if se, ok := tok.(xml.StartElement); ok {
			n[se.Name.Local]++
			for _, a := range se.Attr {
				if a.Name.Local == "class" {
					n[se.Name.Local+"."+a.Value]++
				}
			}
		}
	}
}

func render(t *testing.T, c *Chart) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

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
					{Series: Series{Name: "p50", Color: "#1f77b4", Y: []float64{0.2, 0.3, nan, 0.25, 0.2}}},
					{Series: Series{Name: "p99", Color: "#ff7f0e", Y: []float64{1, 2, 3, 4, 5}}, Dashed: true},
				},
				Bars:  &Series{Name: "failures", Color: "#d62728", Y: []float64{0, 0, 0, 0, 0}},
				Shade: [][2]float64{{0.1, 0.3}},
				Marks: []float64{0.1, 0.2},
			},
			{
				Title: "nginx",
				X:     []float64{0, 0.1, 0.2, 0.3, 0.4},
				Lines: []Line{
					{Series: Series{Name: "p50", Color: "#1f77b4", Y: []float64{0.1, 0, 0.3, nan, 0.2}}},
				},
				Bars:  &Series{Name: "failures", Color: "#d62728", Y: []float64{0, 64, 0, 128, 0}},
				Marks: []float64{0.1, 0.3, 99}, // 99 is off the axis: not drawn
			},
		},
	}
}

// TestWriteSVG: the document is well-formed, escapes its text, and draws
// what the data holds: lines split at gaps, a bar per non-zero count, a
// mark per signal within range, the shaded span.
func TestWriteSVG(t *testing.T) {
	doc := render(t, chart())
	n := elements(t, doc)
	if n["svg"] != 1 || n["g.panel"] != 2 {
		t.Errorf("want one svg with two panels: %v", n)
	}
	// handoff: p50 split in two by the NaN, p99 whole; nginx: the 0 on a
	// log axis and the NaN leave three lone points.
	if got := n["polyline"]; got != 3 {
		t.Errorf("%d polylines, want 3:\n%s", got, doc)
	}
	if got := n["circle.point"]; got != 3 {
		t.Errorf("%d lone points, want 3", got)
	}
	if got := n["rect.bar"]; got != 2 {
		t.Errorf("%d bars, want 2 (zero counts draw nothing)", got)
	}
	if got := n["line.mark"]; got != 4 {
		t.Errorf("%d marks, want 4", got)
	}
	if got := n["rect.shade"]; got != 1 {
		t.Errorf("%d shaded spans, want 1", got)
	}
	s := string(doc)
	for _, want := range []string{"restarts &lt;under&gt; load &amp; more", ">second line<", "stroke-dasharray=\"5,3\"", ">200<", ">0.1<", ">restart signal<", ">10<"} {
		if !strings.Contains(s, want) {
			t.Errorf("document lacks %q", want)
		}
	}
	if strings.Contains(s, "NaN") || strings.Contains(s, "Inf") {
		t.Errorf("a NaN or Inf reached the document:\n%s", s)
	}
}

// TestLinear: a linear axis from 0, and panels without bars or lines.
func TestLinear(t *testing.T) {
	c := &Chart{Title: "linear", Panels: []Panel{
		{X: []float64{1, 2, 3}, Lines: []Line{{Series: Series{Name: "rps", Color: "green", Y: []float64{900, 1000, 1100}}}}},
		{X: []float64{1, 2}, Bars: &Series{Name: "n", Color: "red", Y: []float64{3, 0}}},
	}}
	doc := render(t, c)
	n := elements(t, doc)
	if n["polyline"] != 1 || n["rect.bar"] != 1 || n["line.mark"] != 0 {
		t.Errorf("unexpected elements %v", n)
	}
	if !strings.Contains(string(doc), ">2000<") { // niceMax(1100)
		t.Errorf("left axis does not reach 2000:\n%s", doc)
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    *Chart
		want string
	}{
		{"no panels", &Chart{}, "no panels"},
		{"no x", &Chart{Panels: []Panel{{Title: "p"}}}, "nothing to draw"},
		{"short series", &Chart{Panels: []Panel{{X: []float64{1, 2}, Lines: []Line{{Series: Series{Name: "s", Y: []float64{1}}}}}}},
			`series "s" has 1 values for 2 x`},
		{"unsorted x", &Chart{Panels: []Panel{{X: []float64{2, 1}}}}, "not ascending at index 1"},
		{"nan x", &Chart{Panels: []Panel{{X: []float64{math.NaN()}}}}, "x holds NaN"},
		{"bad colour", &Chart{Panels: []Panel{{X: []float64{1}, Bars: &Series{Name: "b", Color: `red"/>`, Y: []float64{1}}}}},
			"not a plain CSS colour"},
		{"tiny", &Chart{Width: 10, Panels: []Panel{{X: []float64{1}}}}, "too small"},
	} {
		var b bytes.Buffer
		err := tc.c.WriteSVG(&b)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.want)
		}
		if b.Len() != 0 {
			t.Errorf("%s: wrote %d bytes despite the error", tc.name, b.Len())
		}
	}
}

func TestTicks(t *testing.T) {
	for _, tc := range []struct {
		v, want float64
	}{{0, 1}, {1, 1}, {1.5, 2}, {3, 5}, {7, 10}, {64, 100}, {128, 200}, {500, 500}} {
		if got := niceMax(tc.v); got != tc.want {
			t.Errorf("niceMax(%v) = %v, want %v", tc.v, got, tc.want)
		}
	}
	got := linearTicksFrom(0, 20)
	if len(got) != 5 || got[0] != 0 || got[4] != 20 {
		t.Errorf("linearTicksFrom(0, 20) = %v", got)
	}
}

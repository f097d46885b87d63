package main

import (
	"fmt"
	"image/color"
	"math"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/mdtable"
	"github.com/handoff-dev/handoff/bench/internal/timeplot"
	"github.com/handoff-dev/handoff/bench/load"
)

// plotStep is the width of a plot's buckets.
const (
	plotStep = 100 * time.Millisecond
	stepText = "100 ms"
)

// restartChart plots every run of a restarts or upgrades scenario, one
// panel per run, grouped by subject: latency p50 and p99 per bucket, failed
// requests per bucket, the signals and the window they fall in.
func restartChart(scenario string, runs []*loadRun, cfg config) *timeplot.Chart {
	what, count := "a restart", cfg.restarts
	if scenario == scUpgrades {
		what, count = "an upgrade", cfg.upgrades
	}
	c := &timeplot.Chart{
		Title: fmt.Sprintf("%s under load: %d × %s, paced by %s (at least %v apart), %d keep-alive clients that never retry",
			scenarioTitle(scenario), count, what, cfg.pace, cfg.every, cfg.clients),
		Note: fmt.Sprintf("Latency p50 and p99 of the successful requests per %s (left, log scale) and failed requests per %s (bars, right), one row per run.\n"+
			"Dashed lines: the signals; shaded: from the first signal to when the next would have been due after the last. Rows share their axes.",
			stepText, stepText),
		XLabel:    "seconds since the load started",
		YLabel:    "latency (ms)",
		BarLabel:  "failed per " + stepText,
		MarkLabel: "signal",
		LogY:      true,
	}
	for _, r := range bySubject(runs) {
		if r.res == nil {
			continue
		}
		series, err := r.res.Series(plotStep)
		if err != nil {
			continue
		}
		p := timeplot.Panel{Title: panelTitle(r)}
		p50 := timeplot.Line{Series: timeplot.Series{Name: "p50", Color: color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}}}
		p99 := timeplot.Line{Series: timeplot.Series{Name: "p99", Color: color.RGBA{R: 0xff, G: 0x7f, B: 0x0e, A: 0xff}}}
		bars := &timeplot.Series{Name: "failed requests", Color: color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}}
		for i, st := range series {
			p.X = append(p.X, (time.Duration(i) * plotStep).Seconds())
			p50.Y = append(p50.Y, latencyMs(st, st.P50))
			p99.Y = append(p99.Y, latencyMs(st, st.P99))
			bars.Y = append(bars.Y, float64(st.Failed()))
		}
		p.Lines, p.Bars = []timeplot.Line{p50, p99}, bars
		begin := r.res.Begin
		if !r.during.From.IsZero() {
			p.Shade = [][2]float64{{r.during.From.Sub(begin).Seconds(), r.during.To.Sub(begin).Seconds()}}
		}
		for _, s := range r.signals {
			p.Marks = append(p.Marks, s.Sub(begin).Seconds())
		}
		c.Panels = append(c.Panels, p)
	}
	return c
}

// latencyMs is a percentile in milliseconds, NaN (a gap) for a bucket
// without a successful request.
func latencyMs(st load.Stats, d time.Duration) float64 {
	if st.OK() == 0 {
		return math.NaN()
	}
	return float64(d) / float64(time.Millisecond)
}

func panelTitle(r *loadRun) string {
	t := fmt.Sprintf("%s, round %d", r.subject, r.round)
	if r.res != nil {
		all := r.all()
		t += fmt.Sprintf(": %s of %s requests failed", mdtable.Int(all.Failed()), mdtable.Int(all.Requests))
		if d := r.duringStats(); d.Requests > 0 {
			t += fmt.Sprintf("; p99 %.2f ms during the signals", float64(d.P99)/float64(time.Millisecond))
		}
	}
	return t
}

// bySubject orders runs by subject, in the order subjects first appear,
// then by round.
func bySubject(runs []*loadRun) []*loadRun {
	var order []string
	for _, r := range runs {
		if !slices.Contains(order, r.subject) {
			order = append(order, r.subject)
		}
	}
	out := slices.Clone(runs)
	slices.SortStableFunc(out, func(a, b *loadRun) int {
		return slices.Index(order, a.subject) - slices.Index(order, b.subject)
	})
	return out
}

func scenarioTitle(s string) string {
	switch s {
	case scThroughput:
		return "Steady throughput"
	case scRestarts:
		return "Restarts"
	case scUpgrades:
		return "Self-upgrades"
	}
	return s
}

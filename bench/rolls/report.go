package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// config is the harness's flags.
type config struct {
	rolls, clients, workers int
	steady, gap             time.Duration
	rollTimeout, limit      time.Duration
	mode                    load.Mode
	method                  load.Method
	bin                     string
	verbose                 bool
	logTimeout              time.Duration // a test seam; 0: defaultLogTimeout
}

// flags renders the configuration as the flags that reproduce it.
func (c config) flags() string {
	s := fmt.Sprintf("-rolls %d -clients %d -workers %d -steady %v -gap %v -mode %v -method %v -roll-timeout %v -limit %v",
		c.rolls, c.clients, c.workers, c.steady, c.gap, c.mode, c.method, c.rollTimeout, c.limit)
	if c.bin != "" {
		s += " -bin " + c.bin
	}
	return s
}

// machine describes where the run happened.
type machine struct {
	nproc  int
	kernel string
	goVer  string
}

// roll is one rolling restart as the harness saw it.
type roll struct {
	window load.Window   // SIGHUP sent to "roll complete" read
	took   time.Duration // the supervisor's own measure
}

// report is everything a run measured; parts stay zero when the run
// stopped early.
type report struct {
	command    string
	cfg        config
	machine    machine
	res        *load.Result
	steady     load.Window
	rolls      []roll
	generation string  // which generation served after the rolls, a note
	errs       []error // what went wrong besides failed requests
}

// failed says whether the run must exit non-zero.
func (r *report) failed() bool {
	return len(r.errs) > 0 || r.res == nil || r.res.Stats().Failed() > 0 || len(r.rolls) < r.cfg.rolls
}

func (r *report) write(w io.Writer) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("## handoff: rolling restarts under load\n\n")
	p("- command: `%s`\n", r.command)
	p("- flags in effect: `%s`\n", r.cfg.flags())
	p("- machine: nproc %d, kernel %s, %s\n", r.machine.nproc, r.machine.kernel, r.machine.goVer)
	p("- setup: %d workers; %d %s keep-alive clients, %s; %d rolls back to back (gap %v)\n\n",
		r.cfg.workers, r.cfg.clients, r.cfg.mode, methodText(r.cfg.method), r.cfg.rolls, r.cfg.gap)
	if r.res == nil {
		p("no load was run.\n")
		r.writeVerdict(p)
		return
	}

	wins := make([]load.Window, len(r.rolls))
	for i, rl := range r.rolls {
		wins[i] = rl.window
	}
	var rolling load.Stats // Stats() without windows would be the whole run
	if len(wins) > 0 {
		rolling = r.res.Stats(wins...)
	}
	steady, whole := r.res.Stats(r.steady), r.res.Stats()
	cols := []load.Stats{steady, rolling, whole}
	row := func(name string, f func(load.Stats) string) {
		p("| %s |", name)
		for _, s := range cols {
			p(" %s |", f(s))
		}
		p("\n")
	}
	p("| | steady | during rolls | whole run |\n| --- | ---: | ---: | ---: |\n")
	p("| window | %s | %s (%d rolls) | %s |\n", seconds(steady.Span), seconds(rolling.Span), len(r.rolls),
		seconds(whole.Span))
	row("requests", func(s load.Stats) string { return fmt.Sprint(s.Requests) })
	row("ok", func(s load.Stats) string { return fmt.Sprint(s.OK()) })
	row("throughput (ok req/s)", func(s load.Stats) string { return fmt.Sprintf("%.0f", s.RPS) })
	ratio := "n/a"
	if steady.RPS > 0 && len(r.rolls) > 0 {
		ratio = fmt.Sprintf("%.3f", rolling.RPS/steady.RPS)
	}
	p("| throughput ratio, rolls / steady | | %s | |\n", ratio)
	row("latency p50", func(s load.Stats) string { return ms(s.P50) })
	row("latency p99", func(s load.Stats) string { return ms(s.P99) })
	row("latency max", func(s load.Stats) string { return ms(s.Max) })
	for _, k := range load.FailureKinds() {
		row("failed: "+k.String(), func(s load.Stats) string { return fmt.Sprint(s.ByKind[k]) })
	}
	row("**failed, all kinds**", func(s load.Stats) string { return fmt.Sprintf("**%d**", s.Failed()) })
	p("\nrequests total: %d; connections dialled: %d; aborted: %d\n\n", whole.Requests, r.res.Dials,
		r.res.Aborted)
	if r.generation != "" {
		p("%s\n\n", r.generation)
	}

	if len(r.rolls) > 0 {
		var hup, took []time.Duration
		for _, rl := range r.rolls {
			hup = append(hup, rl.window.To.Sub(rl.window.From))
			took = append(took, rl.took)
		}
		p("| time per roll (%d rolls) | p50 | p99 | max |\n| --- | ---: | ---: | ---: |\n", len(r.rolls))
		for _, line := range []struct {
			name string
			d    []time.Duration
		}{{"SIGHUP sent → \"roll complete\" read", hup}, {"supervisor's \"took\"", took}} {
			p50, p99, mx := percentiles(line.d)
			p("| %s | %s | %s | %s |\n", line.name, ms(p50), ms(p99), ms(mx))
		}
		p("\n")
	}
	if n := len(r.res.Failures); n > 0 {
		p("first failures (of %d kept in detail, %d more counted):\n\n", n, r.res.DroppedFailures)
		for _, f := range r.res.Failures[:min(n, 10)] {
			p("- at %s, client %d, %s on a %s connection: %s: %v\n", seconds(f.At), f.Client, f.Method,
				map[bool]string{true: "reused", false: "new"}[f.Reused], f.Kind, f.Err)
		}
		p("\n")
	}
	r.writeVerdict(p)
}

func (r *report) writeVerdict(p func(string, ...any)) {
	for _, err := range r.errs {
		p("error: %s\n", strings.ReplaceAll(err.Error(), "\n", "\n  "))
	}
	switch {
	case r.failed():
		failed := 0
		if r.res != nil {
			failed = r.res.Stats().Failed()
		}
		p("result: FAIL (%d failed requests, %d of %d rolls, %d errors)\n", failed, len(r.rolls), r.cfg.rolls,
			len(r.errs))
	default:
		p("result: PASS (no request failed in %d rolls; the supervisor exited with status 0)\n", len(r.rolls))
	}
}

func methodText(m load.Method) string {
	if m == load.Mixed {
		return "GET and POST alternating"
	}
	return m.String()
}

// percentiles returns the nearest-rank p50, p99 and max of ds.
func percentiles(ds []time.Duration) (p50, p99, mx time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := func(p int) time.Duration { return s[max((len(s)*p+99)/100, 1)-1] }
	return rank(50), rank(99), s[len(s)-1]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }

package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// fakeResult is 5 s of load at rps successful requests per second taking
// lat each, plus the failures given by their start offsets.
func fakeResult(begin time.Time, rps int, lat time.Duration, fails map[time.Duration]load.Kind) *load.Result {
	r := &load.Result{Begin: begin, End: begin.Add(5 * time.Second), Clients: 4}
	step := time.Second / time.Duration(rps)
	for at := time.Duration(0); at < 5*time.Second; at += step {
		r.Samples = append(r.Samples, load.Sample{Start: at, Duration: lat, Kind: load.OK})
	}
	for at, k := range fails {
		r.Samples = append(r.Samples, load.Sample{Start: at, Duration: lat, Kind: k})
		r.Failures = append(r.Failures, load.Failure{At: at, Kind: k, Method: load.GET, Reused: true,
			Err: errors.New("EOF")})
	}
	// Samples must be ordered by start.
	for i := 1; i < len(r.Samples); i++ {
		for j := i; j > 0 && r.Samples[j].Start < r.Samples[j-1].Start; j-- {
			r.Samples[j], r.Samples[j-1] = r.Samples[j-1], r.Samples[j]
		}
	}
	return r
}

// fakeRun is a run with a steady window [0.5 s, 2.5 s) and two signals
// at 2.5 s and 3.5 s, in a window [2.5 s, 4.5 s).
func fakeRun(scenario, subject string, round, rps int, lat time.Duration, fails map[time.Duration]load.Kind) *loadRun {
	b := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	at := func(s float64) time.Time { return b.Add(time.Duration(s * float64(time.Second))) }
	return &loadRun{
		scenario: scenario, subject: subject, round: round,
		res:     fakeResult(b, rps, lat, fails),
		steady:  load.Window{From: at(0.5), To: at(2.5)},
		during:  load.Window{From: at(2.5), To: at(4.5)},
		signals: []time.Time{at(2.5), at(3.5)},
		took:    []time.Duration{5 * time.Millisecond, 7 * time.Millisecond},
	}
}

func fakeResults() *results {
	cfg, _ := parseFlags(nil, io.Discard)
	res := &results{cfg: cfg, command: "go run ./compare", began: time.Now(), wall: 7 * time.Minute,
		machine: machine{nproc: 2, cpu: "a CPU", kernel: "6.18", goVer: "go1.26"}, plots: map[string]string{scRestarts: "restarts.svg"},
		peers: []peer{{name: "nginx", path: "/usr/sbin/nginx", version: "1.22.1", how: "already installed"}, {name: "gunicorn", how: "not installed"}},
		notes: []string{"gunicorn was skipped: not installed."}, skipped: []string{"footprint (needs about 26s, 12s was left)"}}
	eof, reset := load.EOFBeforeResponse, load.Reset
	for round := 1; round <= 2; round++ {
		res.restarts = append(res.restarts,
			fakeRun(scRestarts, "handoff", round, 100, time.Millisecond, nil),
			fakeRun(scRestarts, "tableflip", round, 100, 2*time.Millisecond, map[time.Duration]load.Kind{2600 * time.Millisecond: eof, 3600 * time.Millisecond: eof}),
			fakeRun(scRestarts, "nginx", round, 200, time.Millisecond/2, map[time.Duration]load.Kind{2700 * time.Millisecond: reset}))
		res.upgrades = append(res.upgrades,
			fakeRun(scUpgrades, "handoff", round, 100, time.Millisecond, nil),
			fakeRun(scUpgrades, "tableflip", round, 100, 3*time.Millisecond, map[time.Duration]load.Kind{2600 * time.Millisecond: eof}))
		th := fakeRun(scThroughput, "handoff", round, 100, time.Millisecond, nil)
		th.during, th.signals = load.Window{}, nil
		res.throughput = append(res.throughput, th)
		res.spawn = append(res.spawn,
			&spawnRun{who: "handoff", round: round, n: 100, total: []time.Duration{500 * time.Millisecond, 312500 * time.Microsecond}[round-1], per: []time.Duration{time.Millisecond}},
			&spawnRun{who: "raw os.StartProcess", round: round, n: 100, total: 250 * time.Millisecond, per: []time.Duration{time.Millisecond}})
	}
	for _, r := range res.restarts {
		r.res.Dials = 4 // each client's one connection
		if r.subject != "handoff" {
			r.res.Dials += 4 * len(r.signals) // every signal closed every connection
		}
	}
	res.reap = []*reapRun{{Mode: "reap: pidfd per child", Round: 1, PacedP50: 100 * time.Microsecond, Threads: 6}}
	res.footprint = []*spawnRun{{who: "handoff", n: 1000, total: 4 * time.Second, threads: 9, rss: 20 << 20, stop: 10 * time.Second}}
	res.footprintRaw = []*spawnRun{{who: "raw os.StartProcess", n: 1000, total: 4 * time.Second, stop: 8 * time.Second}}
	return res
}

// TestReport: the Markdown holds the headline ratios, the failure kinds
// that occurred and only those, the plots, the notes; every table is
// rectangular.
func TestReport(t *testing.T) {
	var b strings.Builder
	writeReport(&b, fakeResults())
	md := b.String()
	for _, want := range []string{
		"0 vs 2",              // upgrades: tableflip
		"×0.50 (0.50–0.50)",   // handoff's p99 over tableflip's
		"×2.00 (2.00–2.00)",   // handoff's p99 over nginx's
		"2.00 ms (2.00–2.00)", // tableflip's p99 during, per round
		"4 of 4 vs 4 of 4",    // completed of signals
		"| EOF before any response byte |", "reset",
		"![Restarts: latency and failures over time](restarts.svg)",
		"Spawn: handoff brings workers to ready at 260/s (200–320), raw os.StartProcess of the same binary plus an accepted request at 400/s (400–400): handoff ÷ raw ×0.65 (0.50–0.80).",
		"- gunicorn was skipped: not installed.",
		"- **Skipped, for want of time under -limit** (earlier scenarios ran longer than estimated; raise -limit or run them with -only): footprint (needs about 26s, 12s was left).",
		"nginx 1.22.1 (Debian; already installed)",
		"20.0 MiB",
		"tableflip's first failed request", // not there: only handoff's is listed
	} {
		if want == "tableflip's first failed request" {
			if strings.Contains(md, want) {
				t.Errorf("report lists a peer's first failure")
			}
			continue
		}
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q", want)
		}
	}
	for _, re := range []string{
		`\| tableflip +\| +0 vs 4 \|`, // 2 failures per round, 2 rounds
		`\| +1,000 \| +4000.00 ms \|[^\n]*\| +10000.00 ms \| +8000.00 ms \| +×1.25 \|`, // the footprint row, its stop beside raw's
		`\| handoff +\| +1 \| +2 \| +2 \| [^\n]*\| +0\.00 \| +[0-9.]+ ms \|`,           // no reconnect
		`\| tableflip +\| +1 \| +2 \| +2 \| [^\n]*\| +4\.00 \| +[0-9.]+ ms \|`,         // 4 clients, each once per signal
	} {
		if !regexp.MustCompile(re).MatchString(md) {
			t.Errorf("report does not match %s", re)
		}
	}
	if strings.Contains(md, "| timeout |") || strings.Contains(md, "non-200") {
		t.Errorf("report has a column for a kind that never occurred")
	}
	checkTables(t, md)
}

// checkTables fails if a Markdown table has rows of different widths.
func checkTables(t *testing.T, md string) {
	t.Helper()
	pipes := regexp.MustCompile(`(^|[^\\])\|`)
	width := -1
	for i, line := range strings.Split(md, "\n") {
		if !strings.HasPrefix(line, "|") {
			width = -1
			continue
		}
		n := len(pipes.FindAllString(line, -1))
		if width < 0 {
			width = n
		} else if n != width {
			t.Errorf("line %d has %d cells' pipes, its table %d: %s", i+1, n, width, line)
		}
	}
}

// TestGroups: aggregates over rounds.
func TestGroups(t *testing.T) {
	res := fakeResults()
	gs := groups(res.restarts)
	if len(gs) != 3 || gs[0].subject != "handoff" || gs[2].subject != "nginx" {
		t.Fatalf("groups: %+v", gs)
	}
	tf := gs[1]
	if tf.failed() != 4 || tf.signals() != 4 || time.Duration(tf.p99During()) != 2*time.Millisecond {
		t.Errorf("tableflip: failed %d, signals %d, p99 %v", tf.failed(), tf.signals(), time.Duration(tf.p99During()))
	}
	// The load is flat, so throughput during the signals is what it was
	// before them, less the failed requests (which are not ok).
	if k := gs[0].kept(); k < 0.99 || k > 1.01 {
		t.Errorf("handoff kept %v, want 1", k)
	}
	if err := (&loadRun{}).err; err != nil {
		t.Fatal(err)
	}
	if g := (group{runs: []*loadRun{{subject: "x", err: errors.New("no")}}}); g.failed() != 0 || !isNaN(g.kept()) {
		t.Errorf("a group without results: failed %d, kept %v", g.failed(), g.kept())
	}
}

func isNaN(f float64) bool { return f != f }

// TestRestartChart: one panel per run that has a result, with its
// signals, written as well-formed SVG.
func TestRestartChart(t *testing.T) {
	res := fakeResults()
	runs := append(res.restarts, &loadRun{subject: "broken", round: 1, err: errors.New("no start")})
	c := restartChart(scRestarts, runs, res.cfg)
	if len(c.Panels) != 6 {
		t.Fatalf("%d panels, want 6", len(c.Panels))
	}
	if c.Panels[0].Title != "handoff, round 1: 0 of 500 requests failed; p99 1.00 ms during the signals" ||
		c.Panels[2].Title[:9] != "tableflip" {
		t.Errorf("panels out of order or titled wrong: %q, %q", c.Panels[0].Title, c.Panels[2].Title)
	}
	if got := c.Panels[0].Marks; len(got) != 2 || got[0] != 2.5 || got[1] != 3.5 {
		t.Errorf("marks %v, want [2.5 3.5]", got)
	}
	var b bytes.Buffer
	if err := c.WriteSVG(&b); err != nil {
		t.Fatal(err)
	}
	d := xml.NewDecoder(&b)
	for {
		_, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed: %v", err)
		}
	}
}

// TestRatioSpread: a ratio is the ratio of the means, with the lowest and
// highest ratio within one round; rounds pair by number, not by order.
func TestRatioSpread(t *testing.T) {
	a := group{subject: "handoff", runs: []*loadRun{
		fakeRun(scThroughput, "handoff", 2, 200, time.Millisecond, nil),
		fakeRun(scThroughput, "handoff", 1, 100, time.Millisecond, nil),
	}}
	b := group{subject: "peer", runs: []*loadRun{
		fakeRun(scThroughput, "peer", 1, 100, time.Millisecond, nil),
		fakeRun(scThroughput, "peer", 2, 100, time.Millisecond, nil),
	}}
	if got, want := ratioSpread(a, b, steadyRPSOf), "×1.50 (1.00–2.00)"; got != want {
		t.Errorf("ratioSpread: %q, want %q", got, want)
	}
	if got, want := rateSpread(a.valuesOf(steadyRPSOf)), "150/s (100–200)"; got != want {
		t.Errorf("rateSpread: %q, want %q", got, want)
	}
	paired := group{subject: "peer", runs: []*loadRun{
		fakeRun(scThroughput, "peer", 1, 100, time.Millisecond, nil),
		fakeRun(scThroughput, "peer", 2, 200, time.Millisecond, nil),
	}}
	if got, want := ratioSpread(a, paired, steadyRPSOf), "×1.00 (1.00–1.00)"; got != want {
		t.Errorf("ratioSpread, each round equal: %q, want %q", got, want)
	}
	if got := ratioSpread(group{runs: a.runs[:1]}, b, steadyRPSOf); got != "×2.00" {
		t.Errorf("one round: %q, want ×2.00 without a spread", got)
	}
}

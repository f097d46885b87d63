package main

import (
	"cmp"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/mdtable"
	"github.com/handoff-dev/handoff/bench/load"
)

// group is one subject's runs of a scenario, over the rounds.
type group struct {
	subject string
	runs    []*loadRun
}

// groups gathers runs by subject, in the order subjects first appear.
func groups(runs []*loadRun) []group {
	var gs []group
	for _, r := range runs {
		i := slices.IndexFunc(gs, func(g group) bool { return g.subject == r.subject })
		if i < 0 {
			gs = append(gs, group{subject: r.subject})
			i = len(gs) - 1
		}
		gs[i].runs = append(gs[i].runs, r)
	}
	return gs
}

// measured returns the runs that have a load result.
func (g group) measured() []*loadRun {
	return slices.DeleteFunc(slices.Clone(g.runs), func(r *loadRun) bool { return r.res == nil })
}

// failed is the failed requests of every run, whole runs.
func (g group) failed() (n int) {
	for _, r := range g.measured() {
		n += r.all().Failed()
	}
	return n
}

// signals is the restarts sent over every run.
func (g group) signals() (n int) {
	for _, r := range g.measured() {
		n += len(r.signals)
	}
	return n
}

// meanOf averages f over the measured runs; NaN without any.
func (g group) meanOf(f func(*loadRun) float64) float64 {
	var xs []float64
	for _, r := range g.measured() {
		if x := f(r); !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	if len(xs) == 0 {
		return math.NaN()
	}
	return mean(xs)
}

// valuesOf is f of every measured run, NaNs left out.
func (g group) valuesOf(f func(*loadRun) float64) []float64 {
	var xs []float64
	for _, r := range g.measured() {
		if x := f(r); !math.IsNaN(x) {
			xs = append(xs, x)
		}
	}
	return xs
}

// completed is the restarts seen complete over every run.
func (g group) completed() (n int) {
	for _, r := range g.measured() {
		n += len(r.took)
	}
	return n
}

// folded is the signals folded into another's roll over every run; -1
// when the subject does not fold.
func (g group) folded() int {
	n := -1
	for _, r := range g.measured() {
		if r.rolls != nil {
			n = max(n, 0) + r.rolls.folded(len(r.signals))
		}
	}
	return n
}

// roundRatios pairs a's and b's measured runs by round and returns
// f(a) ÷ f(b) for each round both have.
func roundRatios(a, b group, f func(*loadRun) float64) []float64 {
	var rs []float64
	for _, ra := range a.measured() {
		for _, rb := range b.measured() {
			if ra.round != rb.round {
				continue
			}
			x, y := f(ra), f(rb)
			if !math.IsNaN(x) && !math.IsNaN(y) && x >= 0 && y > 0 {
				rs = append(rs, x/y)
			}
		}
	}
	return rs
}

// ratioSpread renders mean f(a) ÷ mean f(b), and with more than one round
// the lowest and highest ratio of one round: "×0.93 (0.86–1.01)".
func ratioSpread(a, b group, f func(*loadRun) float64) string {
	m := mdtable.Ratio(a.meanOf(f), b.meanOf(f))
	rs := roundRatios(a, b, f)
	if len(rs) < 2 || m == "–" {
		return m
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", m, slices.Min(rs), slices.Max(rs))
}

// meanSpread renders the mean of xs with its unit and, for more than one,
// their min–max: "6.04 ms (6.00–6.07)".
func meanSpread(xs []float64, format func(float64) string, unit string) string {
	switch len(xs) {
	case 0:
		return "–"
	case 1:
		return format(xs[0]) + unit
	}
	return fmt.Sprintf("%s%s (%s–%s)", format(mean(xs)), unit, format(slices.Min(xs)), format(slices.Max(xs)))
}

func msNum(f float64) string   { return fmt.Sprintf("%.2f", f/float64(time.Millisecond)) }
func pctNum(f float64) string  { return fmt.Sprintf("%.0f", 100*f) }
func rateNum(f float64) string { return strings.TrimSuffix(mdtable.Rate(f), "/s") }

func msSpread(xs []float64) string   { return meanSpread(xs, msNum, " ms") }
func rateSpread(xs []float64) string { return meanSpread(xs, rateNum, "/s") }
func pctSpread(xs []float64) string  { return meanSpread(xs, pctNum, "%") }

// Per-run figures, for means, spreads and ratios.
var (
	p99DuringOf = func(r *loadRun) float64 { return float64(r.duringStats().P99) }
	steadyRPSOf = func(r *loadRun) float64 { return r.steadyStats().RPS }
	steadyP99Of = func(r *loadRun) float64 { return float64(r.steadyStats().P99) }
	keptOf      = func(r *loadRun) float64 {
		s := r.steadyStats().RPS
		if s == 0 {
			return math.NaN()
		}
		return r.duringStats().RPS / s
	}
)

func (g group) p99During() float64 {
	return g.meanOf(func(r *loadRun) float64 { return float64(r.duringStats().P99) })
}

func (g group) maxDuring() (m time.Duration) {
	for _, r := range g.measured() {
		m = max(m, r.duringStats().Max)
	}
	return m
}

// kept is throughput during the signals over steady throughput.
func (g group) kept() float64 {
	return g.meanOf(func(r *loadRun) float64 {
		s := r.steadyStats().RPS
		if s == 0 {
			return math.NaN()
		}
		return r.duringStats().RPS / s
	})
}

func (g group) steadyRPS() float64 {
	return g.meanOf(func(r *loadRun) float64 { return r.steadyStats().RPS })
}

func (g group) steadyP99() float64 {
	return g.meanOf(func(r *loadRun) float64 { return float64(r.steadyStats().P99) })
}

func find(gs []group, subject string) (group, bool) {
	i := slices.IndexFunc(gs, func(g group) bool { return g.subject == subject })
	if i < 0 {
		return group{}, false
	}
	return gs[i], true
}

func dur(f float64) time.Duration {
	if math.IsNaN(f) {
		return -1
	}
	return time.Duration(f)
}

// writeReport renders the results as BENCHMARKS.md.
func writeReport(w io.Writer, res *results) {
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	cfg := res.cfg
	p("# handoff side by side\n\n")
	at := ""
	if res.commit != "" {
		at = fmt.Sprintf(" at commit `%s`", res.commit)
	}
	p("Measured in one invocation of `%s` (from `bench/`)%s, started %s, wall time %s.\n\n",
		res.command, at, res.began.UTC().Format("2006-01-02 15:04 MST"), res.wall.Round(time.Second))
	p("- Machine: %d × %s, Linux %s, %s. The load generator shares the cores with the servers.\n",
		res.machine.nproc, res.machine.cpu, res.machine.kernel, res.machine.goVer)
	if res.machine.loadStart != "" {
		p("- Load average (1, 5, 15 min) at the start: %s; at the end: %s. Other work on the machine shares the cores too: read the spreads.\n",
			res.machine.loadStart, cmp.Or(res.machine.loadEnd, "unknown"))
	}
	p("- Subjects: handoff's example (`example -listen 127.0.0.1:0 -workers %d`); the tableflip peer (`bench/peers/tableflip`, github.com/cloudflare/tableflip v1.2.3, its README's pattern), and the same peer draining with handoff's `worker.ServeAndDrain` instead of `http.Server.Shutdown` (`tableflip -drain handoff`, the row \"%s\": tableflip's supervision with handoff's drain, to tell the two apart)",
		cfg.workers, nameTableflipDrain)
	for _, pr := range res.peers {
		if pr.path != "" {
			p("; %s %s (Debian; %s)", pr.name, pr.version, pr.how)
		}
	}
	p(". Every server answers like the example: status 200, X-Worker-Pid, a one-line body.\n")
	if cfg.runs(scThroughput) || cfg.runs(scRestarts) || cfg.runs(scUpgrades) || cfg.runs(scReconnects) {
		p("- Load: %d keep-alive HTTP/1.1 clients of `bench/load`, one connection each, in raw mode: a client never retries and, like wrk, reuses its connection without checking for a FIN. GET and POST alternate. Traffic goes to 127.0.0.1 only.\n",
			cfg.clients)
	}
	if cfg.runs(scTraffic) {
		p("- Traffic scenario: Go's net/http clients (pooled, polling, h2c) and streams, described in its section. Traffic goes to 127.0.0.1 only.\n")
	}
	p("- Rounds: %d; every subject runs once per round and rounds are interleaved (A B C … A B C …). Ratios compare means over rounds, with the lowest and highest ratio within one round in brackets; failures are summed.\n",
		cfg.rounds)
	p("- Flags in effect: `%s`.\n", cfg.flags())
	if len(res.skipped) > 0 {
		p("- **Skipped, for want of time under -limit** (earlier scenarios ran longer than estimated; raise -limit or run them with -only): %s.\n",
			strings.Join(res.skipped, "; "))
	}
	p("\n")

	writeHeadline(p, res)
	if cfg.runs(scThroughput) {
		writeThroughput(p, res.throughput, res.noReuse, cfg)
	}
	if cfg.runs(scRestarts) {
		writeRestarts(p, scRestarts, res.restarts, res.plots[scRestarts], cfg)
	}
	if cfg.runs(scUpgrades) {
		writeRestarts(p, scUpgrades, res.upgrades, res.plots[scUpgrades], cfg)
	}
	if cfg.runs(scSpawn) || cfg.runs(scReap) || cfg.runs(scFootprint) {
		writeSpawn(p, res, cfg)
	}
	if cfg.runs(scTraffic) {
		writeTraffic(p, res.traffic, cfg)
	}
	if cfg.runs(scReconnects) {
		writeReconnects(p, res.reconnects, cfg)
	}
	writeNotes(p, res)
}

type printer = func(format string, a ...any)

func table(p printer, t *mdtable.Table) {
	p("%s\n", t.String())
}

func writeHeadline(p printer, res *results) {
	rs, us, ts := groups(res.restarts), groups(res.upgrades), groups(res.throughput)
	ho, okR := find(rs, "handoff")
	hu, okU := find(us, "handoff")
	if !okR && !okU && len(res.spawn) == 0 && len(ts) == 0 {
		return
	}
	p("## Headline\n\n")
	p("Every ratio is handoff's figure ÷ the other subject's: the ratio of the means over rounds, then in brackets the lowest and the highest ratio within one round (rounds are interleaved, so the subjects of a round ran minutes apart at most). Other figures are a mean, then the lowest and highest round.\n\n")
	if h, ok := find(ts, "handoff"); ok {
		hs := []group{h}
		header := []string{"steady throughput", "ok req/s, mean (min–max)", "handoff ÷ this"}
		if hr, ok := find(ts, "handoff -reuseport"); ok {
			hs = append(hs, hr)
			header = append(header, "handoff -reuseport ÷ this")
		}
		t := mdtable.New(header...)
		for i := 1; i < len(header); i++ {
			t.Right(i)
		}
		for _, g := range ts {
			row := []string{g.subject, rateSpread(g.valuesOf(steadyRPSOf))}
			for _, h := range hs {
				row = append(row, ratioSpread(h, g, steadyRPSOf))
			}
			t.Row(row...)
		}
		table(p, t)
	}
	if okR || okU {
		t := mdtable.New("handoff vs", "restarts: failed requests, handoff vs this", "restarts: completed of signals, handoff vs this",
			"restarts: p99 during, handoff ÷ this", "restarts: throughput kept, handoff vs this",
			"upgrades: failed requests, handoff vs this", "upgrades: p99 during, handoff ÷ this",
			"upgrades: throughput kept, handoff vs this").Right(1, 2, 3, 4, 5, 6, 7)
		var others []string
		for _, g := range append(slices.Clone(rs), us...) {
			if g.subject != "handoff" && !slices.Contains(others, g.subject) {
				others = append(others, g.subject)
			}
		}
		kept := func(g group) string { return pctSpread(g.valuesOf(keptOf)) }
		completed := func(g group) string { return fmt.Sprintf("%d of %d", g.completed(), g.signals()) }
		for _, name := range others {
			row := []string{name, "–", "–", "–", "–", "–", "–", "–"}
			if g, ok := find(rs, name); ok && okR {
				row[1] = fmt.Sprintf("%s vs %s", mdtable.Int(ho.failed()), mdtable.Int(g.failed()))
				row[2] = fmt.Sprintf("%s vs %s", completed(ho), completed(g))
				row[3] = ratioSpread(ho, g, p99DuringOf)
				row[4] = fmt.Sprintf("%s vs %s", kept(ho), kept(g))
			}
			if g, ok := find(us, name); ok && okU {
				row[5] = fmt.Sprintf("%s vs %s", mdtable.Int(hu.failed()), mdtable.Int(g.failed()))
				row[6] = ratioSpread(hu, g, p99DuringOf)
				row[7] = fmt.Sprintf("%s vs %s", kept(hu), kept(g))
			}
			t.Row(row...)
		}
		table(p, t)
		if f := ho.folded(); okR && f > 0 {
			p("handoff folded %d of its %d restart signals into another's roll (a SIGHUP during a roll is queued, and queued ones share the next roll).\n\n", f, ho.signals())
		}
	}
	if h, raw := spawnRates(res.spawn, "handoff"), spawnRates(res.spawn, "raw os.StartProcess"); len(h) > 0 && len(raw) > 0 {
		p("Spawn: handoff brings workers to ready at %s, raw os.StartProcess of the same binary plus an accepted request at %s: handoff ÷ raw %s.\n\n",
			rateSpread(h), rateSpread(raw), spawnRatio(res.spawn))
	}
}

func pct(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func writeThroughput(p printer, runs []*loadRun, noReuse string, cfg config) {
	p("## 1. Steady throughput\n\n")
	p("Each subject serves the same handler to %d clients for %v (after %v of warm-up). handoff's workers share one listening socket that the supervisor bound; \"%s\" gives each of its %d worker slots a socket of its own on the same port (SO_REUSEPORT), kept across the slot's rolls; the Go peer is one process with GOMAXPROCS=2, or %d processes that each bind the port with SO_REUSEPORT.",
		cfg.clients, cfg.window, cfg.warmup, nameHandoffReusePort, cfg.workers, cfg.workers)
	if noReuse != "" {
		p(" **%s was not measured**: %s.", nameHandoffReusePort, noReuse)
	}
	p("\n\n")
	t := mdtable.New("subject", "round", "requests", "ok req/s", "p50", "p99", "max", "failed").Right(1, 2, 3, 4, 5, 6, 7)
	for _, r := range bySubject(runs) {
		if r.res == nil {
			t.Row(r.subject, fmt.Sprint(r.round), "–", "–", "–", "–", "–", errText(r.err))
			continue
		}
		s := r.steadyStats()
		t.Row(r.subject, fmt.Sprint(r.round), mdtable.Int(s.Requests), mdtable.Rate(s.RPS), mdtable.Ms(s.P50),
			mdtable.Ms(s.P99), mdtable.Ms(s.Max), mdtable.Int(r.all().Failed()))
	}
	table(p, t)
	gs := groups(runs)
	h, ok := find(gs, "handoff")
	if !ok {
		return
	}
	t = mdtable.New("subject", "ok req/s, mean (min–max)", "handoff ÷ this", "p99, mean (min–max)", "handoff ÷ this").Right(1, 2, 3, 4)
	for _, g := range gs {
		t.Row(g.subject, rateSpread(g.valuesOf(steadyRPSOf)), ratioSpread(h, g, steadyRPSOf),
			msSpread(g.valuesOf(steadyP99Of)), ratioSpread(h, g, steadyP99Of))
	}
	table(p, t)
	p("Ratios are handoff's mean ÷ this subject's, then the lowest and highest ratio within one round.\n\n")
}

// kindsIn returns the failure kinds that occur in any run.
func kindsIn(runs []*loadRun) []load.Kind {
	var ks []load.Kind
	for _, k := range load.FailureKinds() {
		for _, r := range runs {
			if r.res != nil && r.all().ByKind[k] > 0 {
				ks = append(ks, k)
				break
			}
		}
	}
	return ks
}

func writeRestarts(p printer, scenario string, runs []*loadRun, plot string, cfg config) {
	count, n := cfg.restarts, "2"
	if scenario == scUpgrades {
		count, n = cfg.upgrades, "3"
	}
	p("## %s. %s under load\n\n", n, scenarioTitle(scenario))
	if scenario == scRestarts {
		p("%d restarts under load, after a steady window of %v: handoff rolls its workers (SIGHUP), \"%s\" rolls with a socket per worker slot, where the example has it; tableflip upgrades itself (SIGHUP; a new process inherits the socket, the old one calls http.Server.Shutdown; \"%s\" drains with handoff's worker.ServeAndDrain instead), gunicorn reloads (SIGHUP: new gthread workers, the old ones shut down gracefully), nginx reloads (`nginx -s reload`, a foreground master). A restart is complete when a new generation is ready (handoff: `roll complete`; tableflip: the new process ready; gunicorn: its workers booted; nginx: its new workers started).\n\n",
			count, cfg.steady, nameHandoffReusePort, nameTableflipDrain)
	} else {
		p("%d in-place upgrades of the supervisor under the same load: handoff's supervisor re-executes itself (SIGUSR2; same pid, workers kept; the binary on disk is the same build), tableflip's upgrade is the same as its restart (SIGHUP), nginx's binary upgrade is USR2 to the master (a new master starts with new workers), then WINCH and QUIT to the old master. For that, nginx runs as a daemon under the harness (a subreaper): a foreground master refuses USR2, since its parent never changes. gunicorn's USR2 upgrade was not measured.\n\n",
			count)
	}
	kinds := kindsIn(runs)
	header := []string{"subject", "round", "signals", "completed", "folded", "took p50", "took max", "requests", "failed"}
	for _, k := range kinds {
		header = append(header, k.String())
	}
	header = append(header, "reconnects per signal", "p50 during", "p99 during", "max during", "req/s steady", "req/s during", "kept")
	t := mdtable.New(header...)
	for i := 1; i < len(header); i++ {
		t.Right(i)
	}
	for _, r := range bySubject(runs) {
		row := []string{r.subject, fmt.Sprint(r.round)}
		if r.res == nil {
			row = append(row, make([]string, len(header)-3)...)
			row = append(row, errText(r.err))
			t.Row(row...)
			continue
		}
		all, st, du := r.all(), r.steadyStats(), r.duringStats()
		took, _, tookMax := percentiles(r.took)
		folded := "–"
		if r.rolls != nil {
			folded = fmt.Sprint(r.rolls.folded(len(r.signals)))
		}
		row = append(row, fmt.Sprint(len(r.signals)), fmt.Sprint(len(r.took)), folded, mdtable.Ms(took), mdtable.Ms(tookMax),
			mdtable.Int(all.Requests), mdtable.Int(all.Failed()))
		for _, k := range kinds {
			row = append(row, mdtable.Int(all.ByKind[k]))
		}
		kept := math.NaN()
		if st.RPS > 0 {
			kept = du.RPS / st.RPS
		}
		row = append(row, ratef(r.reconnectsPerSignal()), mdtable.Ms(du.P50), mdtable.Ms(du.P99), mdtable.Ms(du.Max), mdtable.Rate(st.RPS),
			mdtable.Rate(du.RPS), pct(kept))
		t.Row(row...)
	}
	table(p, t)
	p("%s \"completed\" counts the restarts seen complete; \"folded\" the signals that started no roll of their own (handoff queues a SIGHUP that lands during a roll, and every SIGHUP queued behind one roll shares the next; the other subjects start a restart per signal, \"–\"). \"took\" is each completed restart's own duration: for handoff from its `rolling` line to the `roll complete` of the same generation in the supervisor's log; for the others from the signal to the new generation ready, as read by the harness. ", paceText(cfg))
	p("\"reconnects per signal\" is (connections the clients dialled − clients) ÷ signals: about 1 per client when every restart closes every connection, 0 when connections outlive restarts. \"failed\" and its kinds count the whole run (old processes keep draining after the last signal); latency and req/s \"during\" count requests that started between the first signal and the time the next signal would have been due after the last; \"kept\" is req/s during ÷ req/s steady. The machine is shared and noisy: compare the rounds before trusting a small difference.\n\n")

	gs := groups(runs)
	h, ok := find(gs, "handoff")
	t = mdtable.New("subject", "failed, all rounds", "failed per signal", "completed of signals", "folded",
		"p99 during, mean (min–max)", "max during", "kept, mean (min–max)", "handoff p99 ÷ this").Right(1, 2, 3, 4, 5, 6, 7, 8)
	for _, g := range gs {
		perSignal := "–"
		if s := g.signals(); s > 0 {
			perSignal = fmt.Sprintf("%.1f", float64(g.failed())/float64(s))
		}
		ratio := "–"
		if ok {
			ratio = ratioSpread(h, g, p99DuringOf)
		}
		folded := "–"
		if f := g.folded(); f >= 0 {
			folded = fmt.Sprint(f)
		}
		t.Row(g.subject, mdtable.Int(g.failed()), perSignal, fmt.Sprintf("%d of %d", g.completed(), g.signals()), folded,
			msSpread(g.valuesOf(p99DuringOf)), mdtable.Ms(g.maxDuring()), pctSpread(g.valuesOf(keptOf)), ratio)
	}
	table(p, t)
	if plot != "" {
		p("![%s: latency and failures over time](%s)\n\n", scenarioTitle(scenario), plot)
	}
	for _, r := range runs {
		if len(r.failed) > 0 {
			p("- %s, round %d: %d restarts reported failed, first: %s\n", r.subject, r.round, len(r.failed), r.failed[0])
		}
		if r.pending > 0 {
			p("- %s, round %d: %d restarts not seen complete before the next signal was due\n", r.subject, r.round, r.pending)
		}
		if r.err != nil {
			p("- %s, round %d: error: %s\n", r.subject, r.round, strings.ReplaceAll(r.err.Error(), "\n", " "))
		}
	}
	if r := firstFailure(runs, "handoff"); r != "" {
		p("- handoff's first failed request: %s\n", r)
	}
	p("\n")
}

// paceText says how the signals were paced.
func paceText(cfg config) string {
	if cfg.pace == paceClock {
		return fmt.Sprintf("Paced by the clock (`-pace clock`): one signal every %v, whatever happened to the one before.", cfg.every)
	}
	return fmt.Sprintf("Paced by completion (`-pace completion`): each signal went out once the previous restart was seen complete and %v had passed, and at least %v after the previous signal, so that every subject completes every restart and the figures compare restart for restart.", cfg.every/4, cfg.every)
}

func firstFailure(runs []*loadRun, subject string) string {
	for _, r := range runs {
		if r.subject == subject && r.res != nil && len(r.res.Failures) > 0 {
			f := r.res.Failures[0]
			return fmt.Sprintf("round %d, at %.3f s, %s on a reused=%v connection: %s: %v", r.round, f.At.Seconds(),
				f.Method, f.Reused, f.Kind, f.Err)
		}
	}
	return ""
}

// spawnRates is who's ready/s, per round.
func spawnRates(runs []*spawnRun, who string) []float64 {
	var xs []float64
	for _, r := range runs {
		if r.who == who && r.err == nil {
			xs = append(xs, r.rate())
		}
	}
	return xs
}

// spawnRatio is handoff's mean rate ÷ raw's, with the per-round spread.
func spawnRatio(runs []*spawnRun) string {
	h, raw := spawnRates(runs, "handoff"), spawnRates(runs, "raw os.StartProcess")
	m := mdtable.Ratio(mean(h), mean(raw))
	var rs []float64
	for _, a := range runs {
		for _, b := range runs {
			if a.who == "handoff" && b.who == "raw os.StartProcess" && a.round == b.round && a.err == nil && b.err == nil && b.rate() > 0 {
				rs = append(rs, a.rate()/b.rate())
			}
		}
	}
	if len(rs) < 2 || m == "–" {
		return m
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", m, slices.Min(rs), slices.Max(rs))
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func writeSpawn(p printer, res *results, cfg config) {
	p("## 4. Spawn and reap\n\n")
	if len(res.spawn) > 0 {
		p("%d workers started at once and timed to ready. handoff: from the supervisor's `starting workers` to each `worker ready` (READY=1 on its notify socket, sent once the worker serves), by the supervisor's log timestamps. Raw: the harness calls os.StartProcess on the same example binary in `-worker` mode, each with a listening socket of its own as fd 3, and times it to the answer of a request on that socket (the kernel queues the connection until the worker accepts).\n\n",
			cfg.spawn)
		t := mdtable.New("spawner", "round", "workers", "first spawn → last ready", "ready/s", "each: p50", "p99", "max").Right(1, 2, 3, 4, 5, 6, 7)
		for _, r := range res.spawn {
			if r.err != nil {
				t.Row(r.who, fmt.Sprint(r.round), fmt.Sprint(r.n), errText(r.err), "", "", "", "")
				continue
			}
			p50, p99, mx := percentiles(r.per)
			t.Row(r.who, fmt.Sprint(r.round), fmt.Sprint(r.n), mdtable.Ms(r.total), mdtable.Rate(r.rate()),
				mdtable.Ms(p50), mdtable.Ms(p99), mdtable.Ms(mx))
		}
		table(p, t)
		h, raw := spawnRates(res.spawn, "handoff"), spawnRates(res.spawn, "raw os.StartProcess")
		p("Mean (min–max over rounds): handoff %s, raw %s; handoff ÷ raw %s. handoff's \"each\" is as its supervisor registered it: one goroutine owns the worker table, starts all %d workers, and only then reads their READY=1, so each worker's figure includes the rest of the spawn loop; the raw column times each process on its own.\n\n",
			rateSpread(h), rateSpread(raw), spawnRatio(res.spawn), cfg.spawn)
	}
	if len(res.reap) > 0 {
		p("Reap latency: from a child's exit, as the kernel timestamps it (the proc connector's exit event, on CLOCK_MONOTONIC, taken in the exiting task), to the moment the waiting program holds the exit status (reap's Status.Time, set when it collects; os.Process.Wait's return). Children are /bin/sh blocked reading a pipe, run by a helper process (the harness re-executed) that does nothing else. Paced: %d children killed one at a time (SIGKILL, 1 ms apart). Flood: %d children released at once by closing the pipe's writer; \"release → last\" is from the release to the last status. Modes: handoff's reap package as the supervisor uses it (a pidfd per child in Go's netpoller, then wait4 of that pid), the same package as a subreaper (wait4(-1) drained on each SIGCHLD), and os.Process.Wait in a goroutine per child, which holds an OS thread while it waits.\n\n",
			cfg.paced, cfg.flood)
		marked := false
		t := mdtable.New("mode", "round", "paced p50", "paced p99", "paced max", "flood p50", "flood p99",
			"release → last", "threads, all alive", "zombies after", "lost").Right(1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
		for _, r := range res.reap {
			mode := r.Mode
			if r.From != fromExit {
				mode += " *"
				marked = true
			}
			row := []string{mode, fmt.Sprint(r.Round), mdtable.Ms(r.PacedP50), mdtable.Ms(r.PacedP99), mdtable.Ms(r.PacedMax),
				mdtable.Ms(r.FloodP50), mdtable.Ms(r.FloodP99), mdtable.Ms(r.FloodMax), fmt.Sprint(r.Threads),
				fmt.Sprint(r.Zombies), fmt.Sprint(r.Lost)}
			if r.Err != "" {
				row[len(row)-1] += " (" + r.Err + ")"
			}
			t.Row(row...)
		}
		table(p, t)
		if marked {
			p("\\* Without the proc connector (it needs CAP_NET_ADMIN), these count from the SIGKILL (paced) or the release (flood), so the children's own exit time is included.\n\n")
		}
	}
	if len(res.footprint) > 0 {
		p("The supervisor's OS threads and resident memory (/proc/<pid>/status Threads and VmRSS) with N example workers: sampled every 10 ms while they start (max), and read once all are ready and 500 ms have passed (settled). SIGTERM → all gone: from the signal to the supervisor until it has exited, which it does once every worker is reaped; raw: the same N workers started by os.StartProcess, SIGTERMed at once by a minimal program and waited for, in the same run.\n\n")
		t := mdtable.New("workers", "all ready after", "ready/s", "threads, settled", "threads, max", "VmRSS, settled",
			"VmRSS, max", "SIGTERM → all gone", "raw", "handoff ÷ raw").Right(0, 1, 2, 3, 4, 5, 6, 7, 8, 9)
		for i, r := range res.footprint {
			if r.err != nil {
				t.Row(fmt.Sprint(r.n), errText(r.err), "", "", "", "", "", "", "", "")
				continue
			}
			raw, ratio := "", ""
			if i < len(res.footprintRaw) {
				if w := res.footprintRaw[i]; w.err != nil {
					raw = errText(w.err)
				} else {
					raw, ratio = mdtable.Ms(w.stop), mdtable.Ratio(r.stop.Seconds(), w.stop.Seconds())
				}
			}
			t.Row(mdtable.Int(r.n), mdtable.Ms(r.total), mdtable.Rate(r.rate()), fmt.Sprint(r.threads),
				fmt.Sprint(r.maxThreads), mib(r.rss), mib(r.maxRSS), mdtable.Ms(r.stop), raw, ratio)
		}
		table(p, t)
	}
}

func writeNotes(p printer, res *results) {
	p("## Notes\n\n")
	p("- Reproduce: `cd bench && go run ./compare` (as root, so that it can apt-get install gunicorn and nginx; `-no-install` skips missing peers). `go run ./compare -h` lists the flags.\n")
	p("- The raw client is the strict one: a server that closes a keep-alive connection it thinks idle fails the next request on it (\"EOF before any response byte\" or \"reset\"). Go's net/http client would retry such a GET, but not a POST.\n")
	for _, n := range res.notes {
		p("- %s\n", n)
	}
}

package main

import (
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
	p("- Subjects: handoff's example (`example -listen 127.0.0.1:0 -workers %d`); the tableflip peer (`bench/peers/tableflip`, github.com/cloudflare/tableflip v1.2.3, its README's pattern)",
		cfg.workers)
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
	p("- Rounds: %d; every subject runs once per round and rounds are interleaved (A B C … A B C …). Ratios compare means over rounds; failures are summed.\n",
		cfg.rounds)
	p("- Flags in effect: `%s`.\n", cfg.flags())
	if len(res.skipped) > 0 {
		p("- **Skipped, for want of time under -limit** (earlier scenarios ran longer than estimated; raise -limit or run them with -only): %s.\n",
			strings.Join(res.skipped, "; "))
	}
	p("\n")

	writeHeadline(p, res)
	if cfg.runs(scThroughput) {
		writeThroughput(p, res.throughput, cfg)
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
	rs, us := groups(res.restarts), groups(res.upgrades)
	ho, okR := find(rs, "handoff")
	hu, okU := find(us, "handoff")
	if !okR && !okU && len(res.spawn) == 0 && len(res.throughput) == 0 {
		return
	}
	p("## Headline\n\n")
	if okR || okU {
		t := mdtable.New("handoff vs", "restarts: failed requests, handoff vs peer", "restarts: p99 during, peer ÷ handoff",
			"restarts: throughput kept, handoff vs peer", "upgrades: failed requests, handoff vs peer",
			"upgrades: p99 during, peer ÷ handoff").Right(1, 2, 3, 4, 5)
		var peers []string
		for _, g := range append(slices.Clone(rs), us...) {
			if g.subject != "handoff" && !slices.Contains(peers, g.subject) {
				peers = append(peers, g.subject)
			}
		}
		for _, name := range peers {
			row := []string{name, "–", "–", "–", "–", "–"}
			if g, ok := find(rs, name); ok && okR {
				row[1] = fmt.Sprintf("%s vs %s", mdtable.Int(ho.failed()), mdtable.Int(g.failed()))
				row[2] = mdtable.Ratio(g.p99During(), ho.p99During())
				row[3] = fmt.Sprintf("%s vs %s", pct(ho.kept()), pct(g.kept()))
			}
			if g, ok := find(us, name); ok && okU {
				row[4] = fmt.Sprintf("%s vs %s", mdtable.Int(hu.failed()), mdtable.Int(g.failed()))
				row[5] = mdtable.Ratio(g.p99During(), hu.p99During())
			}
			t.Row(row...)
		}
		table(p, t)
	}
	if h, raw := spawnMean(res.spawn, "handoff"), spawnMean(res.spawn, "raw os.StartProcess"); h > 0 && raw > 0 {
		p("Spawn: handoff brings workers to ready at %s, raw os.StartProcess of the same binary plus an accepted request at %s: handoff ÷ raw %s.\n\n",
			mdtable.Rate(h), mdtable.Rate(raw), mdtable.Ratio(h, raw))
	}
	ts := groups(res.throughput)
	if h, ok := find(ts, "handoff"); ok {
		var parts []string
		for _, g := range ts[1:] {
			parts = append(parts, fmt.Sprintf("%s %s (÷ handoff %s)", g.subject, mdtable.Rate(g.steadyRPS()),
				mdtable.Ratio(g.steadyRPS(), h.steadyRPS())))
		}
		p("Steady throughput: handoff %s; %s.\n\n", mdtable.Rate(h.steadyRPS()), strings.Join(parts, "; "))
	}
}

func pct(f float64) string {
	if math.IsNaN(f) {
		return "–"
	}
	return fmt.Sprintf("%.0f%%", 100*f)
}

func writeThroughput(p printer, runs []*loadRun, cfg config) {
	p("## 1. Steady throughput\n\n")
	p("Each subject serves the same handler to %d clients for %v (after %v of warm-up). handoff's workers share one listening socket that the supervisor bound; the Go peer is one process with GOMAXPROCS=2, or %d processes that each bind the port with SO_REUSEPORT. handoff's supervisor has no SO_REUSEPORT mode (its workers always inherit the one socket), so SO_REUSEPORT is measured as a peer only.\n\n",
		cfg.clients, cfg.window, cfg.warmup, cfg.workers)
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
	t = mdtable.New("subject", "ok req/s, mean", "÷ handoff", "p99, mean", "÷ handoff").Right(1, 2, 3, 4)
	for _, g := range gs {
		t.Row(g.subject, mdtable.Rate(g.steadyRPS()), mdtable.Ratio(g.steadyRPS(), h.steadyRPS()),
			mdtable.Ms(dur(g.steadyP99())), mdtable.Ratio(g.steadyP99(), h.steadyP99()))
	}
	table(p, t)
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
		p("A restart every %v, %d in all, under load, after a steady window of %v: handoff rolls its workers (SIGHUP), tableflip upgrades itself (SIGHUP; a new process inherits the socket, the old one calls http.Server.Shutdown), gunicorn reloads (SIGHUP: new gthread workers, the old ones shut down gracefully), nginx reloads (`nginx -s reload`, a foreground master). \"Seen complete\" is a new generation ready (handoff: `roll complete`; tableflip: the new process ready; gunicorn: its workers booted; nginx: its new workers started) before the next signal was due.\n\n",
			cfg.every, count, cfg.steady)
	} else {
		p("An in-place upgrade of the supervisor every %v, %d in all, under the same load: handoff's supervisor re-executes itself (SIGUSR2; same pid, workers kept; the binary on disk is the same build), tableflip's upgrade is the same as its restart (SIGHUP), nginx's binary upgrade is USR2 to the master (a new master starts with new workers), then WINCH and QUIT to the old master. For that, nginx runs as a daemon under the harness (a subreaper): a foreground master refuses USR2, since its parent never changes. gunicorn's USR2 upgrade was not measured.\n\n",
			cfg.every, count)
	}
	kinds := kindsIn(runs)
	header := []string{"subject", "round", "signals", "seen complete", "took p50", "requests", "failed"}
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
		took, _, _ := percentiles(r.took)
		row = append(row, fmt.Sprint(len(r.signals)), fmt.Sprint(len(r.took)), mdtable.Ms(took),
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
	p("\"took\" is from a signal to its completion seen in the subject's log, as read by the harness. \"reconnects per signal\" is (connections the clients dialled − clients) ÷ signals: about 1 per client when every restart closes every connection, 0 when connections outlive restarts. \"failed\" and its kinds count the whole run (old processes keep draining after the last signal); latency and req/s \"during\" count requests that started between the first signal and one pace after the last; \"kept\" is req/s during ÷ req/s steady. The machine is shared and noisy: compare the rounds before trusting a small difference.\n\n")

	gs := groups(runs)
	h, ok := find(gs, "handoff")
	t = mdtable.New("subject", "failed, all rounds", "failed per signal", "p99 during, mean", "max during", "kept, mean",
		"p99 ÷ handoff").Right(1, 2, 3, 4, 5, 6)
	for _, g := range gs {
		perSignal := "–"
		if s := g.signals(); s > 0 {
			perSignal = fmt.Sprintf("%.1f", float64(g.failed())/float64(s))
		}
		ratio := "–"
		if ok {
			ratio = mdtable.Ratio(g.p99During(), h.p99During())
		}
		t.Row(g.subject, mdtable.Int(g.failed()), perSignal, mdtable.Ms(dur(g.p99During())), mdtable.Ms(g.maxDuring()),
			pct(g.kept()), ratio)
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
			p("- %s, round %d: %d restarts not seen complete before the next signal\n", r.subject, r.round, r.pending)
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

func spawnMean(runs []*spawnRun, who string) float64 {
	var xs []float64
	for _, r := range runs {
		if r.who == who && r.err == nil {
			xs = append(xs, r.rate())
		}
	}
	return mean(xs)
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
		h, raw := spawnMean(res.spawn, "handoff"), spawnMean(res.spawn, "raw os.StartProcess")
		p("Mean: handoff %s, raw %s; handoff ÷ raw %s. handoff's \"each\" is as its supervisor registered it: one goroutine owns the worker table, starts all %d workers, and only then reads their READY=1, so each worker's figure includes the rest of the spawn loop; the raw column times each process on its own.\n\n",
			mdtable.Rate(h), mdtable.Rate(raw), mdtable.Ratio(h, raw), cfg.spawn)
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
	p("- handoff's supervisor exposes no SO_REUSEPORT mode; scenario 1 measures %d independent SO_REUSEPORT Go processes as the peer mode.\n", res.cfg.workers)
	for _, n := range res.notes {
		p("- %s\n", n)
	}
}

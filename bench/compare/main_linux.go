package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"

	"golang.org/x/sys/unix"
)

func main() {
	if os.Getenv(helperEnv) == "reap" {
		os.Exit(reapHelper())
	}
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "compare:", err)
		os.Exit(2)
	}
	os.Exit(mainRun(cfg))
}

// harness is one invocation: its configuration, its binaries and peers,
// and its clock.
type harness struct {
	cfg      config
	self     string // this binary, for the reap helper
	bins     binaries
	peers    map[string]peer
	tmp      string
	echo     io.Writer // subjects' output, with -v
	logw     io.Writer // progress lines
	began    time.Time
	deadline time.Time
}

func mainRun(cfg config) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h := &harness{cfg: cfg, began: time.Now(), deadline: time.Now().Add(cfg.limit), peers: map[string]peer{},
		logw: os.Stderr}
	ctx, cancel := context.WithDeadline(ctx, h.deadline)
	defer cancel()
	if cfg.verbose {
		h.echo = os.Stderr
	}
	res := &results{cfg: cfg, command: commandLine(), commit: describeCommit(ctx), began: h.began,
		machine: describeMachine(), plots: map[string]string{}}

	fatal := func(err error) int {
		fmt.Fprintln(os.Stderr, "compare:", err)
		return 1
	}
	if cfg.out == "" {
		cfg.out = cfg.freshOut(h.began, res.commit)
		h.cfg.out, res.cfg.out = cfg.out, cfg.out
	}
	if err := cfg.checkOut(); err != nil {
		return fatal(err)
	}
	h.logf("writing into %s", cfg.out)
	// Whatever a subject leaves behind becomes our child, to be swept.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fatal(os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err))
	}
	var err error
	if h.self, err = os.Executable(); err != nil {
		return fatal(err)
	}
	if h.tmp, err = os.MkdirTemp("", "handoff-compare-"); err != nil {
		return fatal(err)
	}
	defer os.RemoveAll(h.tmp)
	defer func() {
		if alive, _, err := orphans.Sweep(); err != nil || alive > 0 {
			fmt.Fprintf(os.Stderr, "compare: %d processes were left at exit; killed and reaped (%v)\n", alive, err)
		}
	}()

	h.logf("building the example and the Go peers")
	if h.bins, err = build(ctx, h.tmp); err != nil {
		return fatal(err)
	}
	if cfg.example != "" {
		h.bins.example, h.bins.reusePort = cfg.example, hasFlag(ctx, cfg.example, "reuseport")
	}
	if !h.bins.reusePort && (cfg.runs(scThroughput) || cfg.runs(scRestarts)) {
		res.noReuse = "the example takes no -reuseport flag (a socket per worker slot): this build of handoff has no such mode"
		res.notes = append(res.notes, nameHandoffReusePort+" was skipped: "+res.noReuse+".")
	}
	if cfg.runs(scRestarts) || cfg.runs(scUpgrades) || cfg.runs(scTraffic) || cfg.runs(scReconnects) {
		for _, p := range h.ensurePeers(ctx) {
			h.peers[p.name] = p
			res.peers = append(res.peers, p)
			if p.path == "" {
				res.notes = append(res.notes, fmt.Sprintf("%s was skipped: %s.", p.name, p.how))
			}
		}
	}

	h.scenarios(ctx, res)
	res.wall = time.Since(h.began)
	res.machine.loadEnd = loadAverage()

	failed := false
	for _, err := range h.write(res) {
		fmt.Fprintln(os.Stderr, "compare:", err)
		failed = true
	}
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "compare: stopped early: %v\n", context.Cause(ctx))
		failed = true
	}
	if failed {
		return 1
	}
	return 0
}

// scenarios runs the chosen scenarios in order, skipping the ones that
// would not fit in what is left of -limit.
func (h *harness) scenarios(ctx context.Context, res *results) {
	cfg := h.cfg
	loadRun := func(n time.Duration) time.Duration { return cfg.warmup + n + cfg.tail + 3*time.Second }
	steps := []struct {
		name     string
		estimate time.Duration
		run      func()
	}{
		{scThroughput, time.Duration(cfg.rounds*len(h.throughputSubjects())) * loadRun(cfg.window), func() { h.runThroughput(ctx, res) }},
		{scRestarts, time.Duration(cfg.rounds*len(h.restartSubjects(false))) * loadRun(cfg.steady+cfg.pacedFor(cfg.restarts)),
			func() { h.runRestarts(ctx, res, scRestarts) }},
		{scUpgrades, time.Duration(cfg.rounds*len(h.restartSubjects(true))) * loadRun(cfg.steady+cfg.pacedFor(cfg.upgrades)),
			func() { h.runRestarts(ctx, res, scUpgrades) }},
		{scSpawn, time.Duration(cfg.rounds*2) * (2*time.Second + time.Duration(cfg.spawn)*10*time.Millisecond),
			func() { h.runSpawn(ctx, res) }},
		{scReap, time.Duration(cfg.rounds*len(reapModes)) * (2*time.Second + time.Duration(cfg.paced)*3*time.Millisecond + time.Duration(cfg.flood)*time.Millisecond),
			func() { h.runReap(ctx, res) }},
		{scFootprint, footprintEstimate(cfg.footprint), func() { h.runFootprint(ctx, res) }},
		{scTraffic, h.trafficEstimate(), func() { h.runTraffic(ctx, res) }},
		{scReconnects, h.reconnectsEstimate(), func() { h.runReconnects(ctx, res) }},
	}
	const reserve = 10 * time.Second // to write the results
	for _, st := range steps {
		if !cfg.runs(st.name) {
			continue
		}
		if left := time.Until(h.deadline) - reserve; left < st.estimate {
			msg := fmt.Sprintf("scenario %s was skipped: it needs about %v and %v of -limit %v was left.",
				st.name, st.estimate.Round(time.Second), left.Round(time.Second), cfg.limit)
			h.logf("%s", msg)
			res.notes = append(res.notes, msg)
			res.skipped = append(res.skipped, fmt.Sprintf("%s (needs about %v, %v was left)", st.name,
				st.estimate.Round(time.Second), left.Round(time.Second)))
			continue
		}
		if ctx.Err() != nil {
			return
		}
		h.logf("scenario %s (about %v)", st.name, st.estimate.Round(time.Second))
		st.run()
	}
}

func footprintEstimate(ns []int) time.Duration {
	var d time.Duration
	for _, n := range ns {
		d += 3*time.Second + time.Duration(n)*30*time.Millisecond // handoff, then raw
	}
	return d
}

func (h *harness) runThroughput(ctx context.Context, res *results) {
	for round := 1; round <= h.cfg.rounds && ctx.Err() == nil; round++ {
		for _, s := range h.throughputSubjects() {
			if ctx.Err() != nil {
				return
			}
			res.throughput = append(res.throughput, h.throughputRun(ctx, s, round))
		}
	}
}

// throughputSubjects are handoff (and handoff -reuseport where the example
// has it) and the Go peers.
func (h *harness) throughputSubjects() []subject {
	subs := []subject{&handoffSubject{bin: h.bins.example, workers: h.cfg.workers, echo: h.echo}}
	if h.bins.reusePort {
		subs = append(subs, &handoffSubject{bin: h.bins.example, workers: h.cfg.workers, reusePort: true, echo: h.echo})
	}
	return append(subs,
		&goSubject{bin: h.bins.goserver, label: "Go, 1 process, GOMAXPROCS=2", procs: 1, gomaxprocs: 2, echo: h.echo},
		&goSubject{bin: h.bins.goserver, label: fmt.Sprintf("Go, %d processes, SO_REUSEPORT", h.cfg.workers),
			procs: h.cfg.workers, reusePort: true, echo: h.echo})
}

// restartSubjects returns a constructor per subject of the restarts (or
// upgrades) scenario, skipping peers that are missing.
func (h *harness) restartSubjects(upgrade bool) []func() (subject, error) {
	subs := []func() (subject, error){
		func() (subject, error) {
			return &handoffSubject{bin: h.bins.example, workers: h.cfg.workers, upgrade: upgrade, echo: h.echo}, nil
		},
		func() (subject, error) { return &tableflipSubject{bin: h.bins.tableflip, echo: h.echo}, nil },
		func() (subject, error) {
			return &tableflipSubject{bin: h.bins.tableflip, handoffDrain: true, echo: h.echo}, nil
		},
	}
	if h.bins.reusePort && !upgrade {
		subs = slices.Insert(subs, 1, func() (subject, error) {
			return &handoffSubject{bin: h.bins.example, workers: h.cfg.workers, reusePort: true, echo: h.echo}, nil
		})
	}
	if p := h.peers["gunicorn"]; p.path != "" && !upgrade {
		subs = append(subs, func() (subject, error) {
			dir, err := tempDir(h.tmp, "gunicorn")
			return &gunicornSubject{bin: p.path, dir: dir, workers: h.cfg.workers, threads: 4, echo: h.echo}, err
		})
	}
	if p := h.peers["nginx"]; p.path != "" {
		subs = append(subs, func() (subject, error) {
			dir, err := tempDir(h.tmp, "nginx")
			return &nginxSubject{bin: p.path, prefix: dir, workers: h.cfg.workers, daemon: upgrade, echo: h.echo}, err
		})
	}
	return subs
}

func (h *harness) runRestarts(ctx context.Context, res *results, scenario string) {
	upgrade := scenario == scUpgrades
	count := h.cfg.restarts
	if upgrade {
		count = h.cfg.upgrades
	}
	for round := 1; round <= h.cfg.rounds && ctx.Err() == nil; round++ {
		for _, mk := range h.restartSubjects(upgrade) {
			if ctx.Err() != nil {
				return
			}
			s, err := mk()
			var r *loadRun
			if err != nil {
				r = &loadRun{scenario: scenario, round: round, subject: "?", err: err}
			} else {
				r = h.restartRun(ctx, scenario, s, round, count)
			}
			if upgrade {
				res.upgrades = append(res.upgrades, r)
			} else {
				res.restarts = append(res.restarts, r)
			}
		}
	}
}

func (h *harness) runSpawn(ctx context.Context, res *results) {
	for round := 1; round <= h.cfg.rounds && ctx.Err() == nil; round++ {
		for _, f := range []func(context.Context, int, int) *spawnRun{h.handoffSpawn, h.rawSpawn} {
			r := f(ctx, h.cfg.spawn, round)
			h.logf("spawn round %d: %s: %d workers ready in %v (%.0f/s) %v", round, r.who, r.n,
				r.total.Round(time.Millisecond), r.rate(), errText(r.err))
			res.spawn = append(res.spawn, r)
		}
	}
}

func (h *harness) runReap(ctx context.Context, res *results) {
	for round := 1; round <= h.cfg.rounds && ctx.Err() == nil; round++ {
		for _, mode := range reapModes {
			r := h.reapBench(ctx, mode, round)
			h.logf("reap round %d: %s: paced p99 %v, flood p99 %v, %d threads %s", round, mode,
				r.PacedP99, r.FloodP99, r.Threads, r.Err)
			res.reap = append(res.reap, r)
		}
	}
}

func (h *harness) runFootprint(ctx context.Context, res *results) {
	for _, n := range h.cfg.footprint {
		if ctx.Err() != nil {
			return
		}
		r := h.handoffSpawn(ctx, n, 1)
		h.logf("footprint: %d workers: supervisor %d threads, %d KiB RSS, SIGTERM → all gone %v %v", n, r.threads, r.rss>>10,
			r.stop.Round(time.Millisecond), errText(r.err))
		res.footprint = append(res.footprint, r)
		raw := h.rawSpawn(ctx, n, 1)
		h.logf("footprint: %d raw workers: SIGTERM → all gone %v %v", n, raw.stop.Round(time.Millisecond), errText(raw.err))
		res.footprintRaw = append(res.footprintRaw, raw)
	}
}

// logf prints a progress line, stamped with the time since the start.
func (h *harness) logf(format string, a ...any) {
	fmt.Fprintf(h.logw, "[%6.1fs] %s\n", time.Since(h.began).Seconds(), fmt.Sprintf(format, a...))
}

// write writes BENCHMARKS.md and the plots into -out, and the Markdown to
// stdout too.
func (h *harness) write(res *results) []error {
	var errs []error
	if err := os.MkdirAll(h.cfg.out, 0o755); err != nil {
		return []error{err}
	}
	for _, sc := range []struct {
		name string
		runs []*loadRun
	}{{scRestarts, res.restarts}, {scUpgrades, res.upgrades}} {
		if len(sc.runs) == 0 {
			continue
		}
		file := sc.name + ".svg"
		if err := writeFile(filepath.Join(h.cfg.out, file), func(w io.Writer) error {
			return restartChart(sc.name, sc.runs, h.cfg).WriteSVG(w)
		}); err != nil {
			errs = append(errs, err)
			continue
		}
		res.plots[sc.name] = file
	}
	if len(res.reconnects) > 0 {
		if err := writeFile(filepath.Join(h.cfg.out, "reconnects.json"), func(w io.Writer) error {
			return writeReconnectsJSON(w, res)
		}); err != nil {
			errs = append(errs, err)
		}
	}
	var md strings.Builder
	writeReport(&md, res)
	if err := os.WriteFile(filepath.Join(h.cfg.out, "BENCHMARKS.md"), []byte(md.String()), 0o644); err != nil {
		errs = append(errs, err)
	}
	fmt.Print(md.String())
	h.logf("wrote %s", filepath.Join(h.cfg.out, "BENCHMARKS.md"))
	return errs
}

func writeFile(path string, f func(io.Writer) error) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f(fh); err != nil {
		fh.Close()
		os.Remove(path)
		return fmt.Errorf("%s: %w", path, err)
	}
	return fh.Close()
}

// commandLine renders how the harness was invoked; under go run the binary
// lives in a temporary build directory.
func commandLine() string {
	name := os.Args[0]
	if strings.Contains(name, string(filepath.Separator)+"go-build") {
		name = "go run ./compare"
	}
	return strings.TrimSpace(name + " " + strings.Join(os.Args[1:], " "))
}

// describeCommit names the commit the run was built from: the
// repository's HEAD, with "+dirty" if the tree has changes outside the
// results (which a run rewrites).
func describeCommit(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	head, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return ""
	}
	c := strings.TrimSpace(string(head))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no",
		"--", ":/", ":(exclude)results").Output(); err == nil && len(st) > 0 {
		c += "+dirty"
	}
	return c
}

// loadAverage is the 1, 5 and 15 minute load averages, "" if unknown.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], ", ")
	}
	return ""
}

func describeMachine() machine {
	m := machine{nproc: runtime.NumCPU(), kernel: "unknown", cpu: "unknown",
		goVer: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, loadStart: loadAverage()}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	return m
}

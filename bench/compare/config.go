package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Scenario names, for -only and the report.
const (
	scThroughput = "throughput"
	scRestarts   = "restarts"
	scUpgrades   = "upgrades"
	scSpawn      = "spawn"
	scReap       = "reap"
	scFootprint  = "footprint"
	scTraffic    = "traffic"
	scReconnects = "reconnects"
)

// How restarts and upgrades are paced (-pace).
const (
	paceCompletion = "completion" // each signal once the previous restart completed, at least -every apart
	paceClock      = "clock"      // one every -every, whatever happens
)

var allScenarios = []string{scThroughput, scRestarts, scUpgrades, scSpawn, scReap, scFootprint, scTraffic, scReconnects}

// optInScenarios are asked for by name: each takes minutes more than the
// default run's -limit leaves. Run alone, each writes its report into a
// directory of its own under results/, never over the main one.
var optInScenarios = []string{scTraffic, scReconnects}

// defaultScenarios run without -only.
var defaultScenarios = slices.DeleteFunc(slices.Clone(allScenarios), func(s string) bool {
	return slices.Contains(optInScenarios, s)
})

// config is the harness's flags.
type config struct {
	out        string
	only       []string
	rounds     int
	clients    int
	workers    int
	window     time.Duration // throughput's measurement window
	steady     time.Duration // steady window before restarts
	restarts   int
	upgrades   int
	traffic    int // restarts per traffic run
	reconnects int // restarts per reconnects run
	every      time.Duration
	pace       string // paceCompletion or paceClock
	example    string // a prebuilt example binary, instead of the one built from ../
	spawn      int
	footprint  []int
	paced      int
	flood      int
	limit      time.Duration
	noInstall  bool
	verbose    bool
	warmup     time.Duration // load before any window, not measured
	tail       time.Duration // load after the last restart's window
}

// pacedFor is about how long n restarts take at -pace: with completion, a
// handoff roll takes about -every (its canary's accept window) and the
// next signal waits a quarter more.
func (c config) pacedFor(n int) time.Duration {
	if c.pace == paceClock {
		return time.Duration(n) * c.every
	}
	return time.Duration(n) * c.every * 5 / 4
}

// freshOut names the directory of a run without -out: new for every run,
// so that a run never overwrites the committed results/ (the lead copies
// a run there by hand); one opt-in scenario alone adds its name.
func (c config) freshOut(began time.Time, commit string) string {
	if commit == "" {
		commit = "unknown"
	}
	d := fmt.Sprintf("results-%s-%s", began.UTC().Format("20060102-150405"), commit)
	if len(c.only) == 1 && slices.Contains(optInScenarios, c.only[0]) {
		d += "-" + c.only[0]
	}
	return d
}

// reportOnly reads the scenarios a BENCHMARKS.md reports, from its
// "Flags in effect" line; ok is false when it names none.
func reportOnly(md string) (only []string, ok bool) {
	m := reportOnlyRE.FindStringSubmatch(md)
	if m == nil {
		return nil, false
	}
	return strings.Split(m[1], ","), true
}

var reportOnlyRE = regexp.MustCompile("(?m)^- Flags in effect: `-only ([a-z,]+) ")

// checkOut refuses an output directory whose BENCHMARKS.md reports other
// scenarios than this run's: `-only traffic -out results` must not replace
// the main report.
func (c config) checkOut() error {
	b, err := os.ReadFile(filepath.Join(c.out, "BENCHMARKS.md"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if old, ok := reportOnly(string(b)); ok && !slices.Equal(old, c.only) {
		return fmt.Errorf("-out %s holds a report of %s, not %s: it would be replaced; choose another -out",
			c.out, strings.Join(old, ","), strings.Join(c.only, ","))
	}
	return nil
}

func (c config) runs(scenario string) bool { return slices.Contains(c.only, scenario) }

// flags renders the configuration as the flags that reproduce it.
func (c config) flags() string {
	fp := make([]string, len(c.footprint))
	for i, n := range c.footprint {
		fp[i] = strconv.Itoa(n)
	}
	return fmt.Sprintf("-only %s -rounds %d -clients %d -workers %d -window %v -steady %v -restarts %d -upgrades %d -every %v -pace %s -spawn %d -footprint %s -paced %d -flood %d -limit %v",
		strings.Join(c.only, ","), c.rounds, c.clients, c.workers, c.window, c.steady, c.restarts, c.upgrades, c.every, c.pace,
		c.spawn, strings.Join(fp, ","), c.paced, c.flood, c.limit) + c.trafficFlags() + c.exampleFlag()
}

func (c config) exampleFlag() string {
	if c.example == "" {
		return ""
	}
	return " -example " + c.example
}

func (c config) trafficFlags() string {
	var s string
	if c.runs(scTraffic) {
		s += fmt.Sprintf(" -traffic-restarts %d", c.traffic)
	}
	if c.runs(scReconnects) {
		s += fmt.Sprintf(" -reconnect-restarts %d", c.reconnects)
	}
	return s
}

// parseFlags parses the command line; usage goes to w.
func parseFlags(args []string, w io.Writer) (config, error) {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(w)
	c := config{warmup: 500 * time.Millisecond, tail: time.Second}
	var only, footprint string
	fs.StringVar(&c.out, "out", "", "directory for BENCHMARKS.md and the plots (default a fresh results-<UTC time>-<commit>[-<opt-in scenario>] in the current directory, never the committed results/; a directory whose BENCHMARKS.md reports other scenarios is refused)")
	fs.StringVar(&only, "only", strings.Join(defaultScenarios, ","), "scenarios to run, comma-separated: "+strings.Join(allScenarios, ", "))
	fs.IntVar(&c.rounds, "rounds", 2, "rounds: every subject runs once per round, rounds interleaved (A B A B); 1 unless given for -only reconnects")
	fs.IntVar(&c.clients, "clients", 64, "concurrent keep-alive clients, one connection each, that never retry")
	fs.IntVar(&c.workers, "workers", 2, "worker processes of handoff, gunicorn and nginx")
	fs.DurationVar(&c.window, "window", 4*time.Second, "throughput: measurement window per run")
	fs.DurationVar(&c.steady, "steady", 2*time.Second, "restarts and upgrades: steady window before the first signal")
	fs.IntVar(&c.restarts, "restarts", 10, "restarts per run, paced by -pace")
	fs.IntVar(&c.upgrades, "upgrades", 10, "upgrades per run, paced by -pace")
	fs.IntVar(&c.traffic, "traffic-restarts", 5, "traffic: restarts per run (3 kinds of client × subjects × rounds)")
	fs.IntVar(&c.reconnects, "reconnect-restarts", 10, "reconnects: restarts per run (2 modes × subjects × rounds)")
	fs.DurationVar(&c.every, "every", time.Second, "pace of restarts and upgrades: the shortest gap between two signals")
	fs.StringVar(&c.pace, "pace", paceCompletion, "restarts and upgrades: "+paceCompletion+" (each signal once the previous restart was seen complete and -every/4 passed, at least -every after the previous signal: every subject completes every restart) or "+paceClock+" (one every -every; a handoff roll still running folds the next SIGHUP into its successor)")
	fs.IntVar(&c.spawn, "spawn", 100, "spawn: workers started at once, by handoff and by os.StartProcess")
	fs.StringVar(&footprint, "footprint", "10,100,1000", "footprint: worker counts at which the supervisor's threads and RSS are read")
	fs.IntVar(&c.paced, "paced", 500, "reap: exits one at a time")
	fs.IntVar(&c.flood, "flood", 5000, "reap: exits at once")
	fs.DurationVar(&c.limit, "limit", 9*time.Minute+30*time.Second, "bound on the whole run, apt-get and build included; scenarios that would not fit are skipped")
	fs.BoolVar(&c.noInstall, "no-install", false, "never apt-get install a missing peer; skip it")
	fs.StringVar(&c.example, "example", "", "a prebuilt example binary to measure instead of the one built from ../ (e.g. another branch's); handoff -reuseport runs if it takes -reuseport")
	fs.BoolVar(&c.verbose, "v", false, "copy every subject's output to stderr")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for s := range strings.SplitSeq(only, ",") {
		s = strings.TrimSpace(s)
		if !slices.Contains(allScenarios, s) {
			return c, fmt.Errorf("-only: unknown scenario %q (want some of %s)", s, strings.Join(allScenarios, ", "))
		}
		if !slices.Contains(c.only, s) {
			c.only = append(c.only, s)
		}
	}
	if set["out"] && c.out == "" {
		return c, fmt.Errorf("-out is empty")
	}
	if !set["rounds"] && slices.Equal(c.only, []string{scReconnects}) {
		c.rounds = 1 // two minutes on 2 cores
	}
	for s := range strings.SplitSeq(footprint, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 5000 {
			return c, fmt.Errorf("-footprint: %q is not a worker count in [1, 5000]", s)
		}
		c.footprint = append(c.footprint, n)
	}
	switch {
	case c.rounds < 1 || c.rounds > 10:
		return c, fmt.Errorf("-rounds %d out of range [1, 10]", c.rounds)
	case c.clients < 1 || c.clients > 4096:
		return c, fmt.Errorf("-clients %d out of range [1, 4096]", c.clients)
	case c.workers < 1 || c.workers > 64:
		return c, fmt.Errorf("-workers %d out of range [1, 64]", c.workers)
	case c.window <= 0 || c.steady <= 0 || c.every <= 0:
		return c, fmt.Errorf("-window %v, -steady %v and -every %v must be positive", c.window, c.steady, c.every)
	case c.every < 200*time.Millisecond:
		return c, fmt.Errorf("-every %v: at least 200ms, so that a restart can complete", c.every)
	case c.restarts < 1 || c.upgrades < 1 || c.traffic < 1 || c.traffic > 100 || c.reconnects < 1 || c.reconnects > 1000:
		return c, fmt.Errorf("-restarts %d and -upgrades %d must be at least 1, -traffic-restarts %d in [1, 100], -reconnect-restarts %d in [1, 1000]",
			c.restarts, c.upgrades, c.traffic, c.reconnects)
	case c.spawn < 1 || c.spawn > 5000:
		return c, fmt.Errorf("-spawn %d out of range [1, 5000]", c.spawn)
	case c.paced < 1 || c.flood < 1 || c.flood > 20000:
		return c, fmt.Errorf("-paced %d must be at least 1 and -flood %d in [1, 20000]", c.paced, c.flood)
	case c.pace != paceCompletion && c.pace != paceClock:
		return c, fmt.Errorf("-pace %q: want %s or %s", c.pace, paceCompletion, paceClock)
	case c.limit <= 0:
		return c, fmt.Errorf("-limit %v must be positive", c.limit)
	}
	return c, nil
}

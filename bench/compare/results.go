package main

import (
	"math"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// nameTableflipDrain is the row of the tableflip peer draining with
// handoff's worker.ServeAndDrain.
const nameTableflipDrain = "tableflip + handoff's drain"

// nameHandoffReusePort is the row of handoff with a socket per worker
// slot (example -reuseport).
const nameHandoffReusePort = "handoff -reuseport"

// loadRun is one subject's run under load: a throughput run, or a run of
// restarts or upgrades.
type loadRun struct {
	scenario string
	subject  string
	round    int // from 1
	res      *load.Result
	steady   load.Window // throughput: the measurement window
	during   load.Window // restarts and upgrades: first signal to one pace after the last
	signals  []time.Time
	took     []time.Duration // each completed restart's own duration
	rolls    *rollCount      // handoff's rolls, counted from its log; nil for other subjects
	pending  int             // restarts not seen complete before the next was due
	failed   []string        // restarts the subject reported as failed
	leftover int             // processes that outlived the subject (killed)
	err      error           // what ended the run early, or went wrong stopping it

	cache map[string]load.Stats // by window name; summarising a run sorts its latencies
}

// reconnectsPerSignal is (dials − clients) ÷ signals; NaN without both.
func (r *loadRun) reconnectsPerSignal() float64 {
	if r.res == nil || len(r.signals) == 0 {
		return math.NaN()
	}
	return float64(r.res.Dials-r.res.Clients) / float64(len(r.signals))
}

// all summarises the whole run.
func (r *loadRun) all() load.Stats { return r.stats("all") }

// steadyStats summarises the steady window.
func (r *loadRun) steadyStats() load.Stats { return r.stats("steady") }

// duringStats summarises the window of the signals; zero without one.
func (r *loadRun) duringStats() load.Stats { return r.stats("during") }

func (r *loadRun) stats(name string) load.Stats {
	if s, ok := r.cache[name]; ok {
		return s
	}
	var s load.Stats
	switch {
	case r.res == nil:
		return s
	case name == "all":
		s = r.res.Stats()
	case name == "steady":
		s = r.res.Stats(r.steady)
	case name == "during" && !r.during.From.IsZero():
		s = r.res.Stats(r.during)
	}
	if r.cache == nil {
		r.cache = map[string]load.Stats{}
	}
	r.cache[name] = s
	return s
}

// spawnRun is N workers started at once and timed to ready: by handoff's
// supervisor, or by os.StartProcess ("raw"). Handoff's runs also read the
// supervisor's threads and RSS.
type spawnRun struct {
	who        string
	round      int
	n          int
	total      time.Duration   // first spawn to the last worker ready
	per        []time.Duration // each worker's spawn to ready
	maxThreads int             // the supervisor's, sampled while spawning
	maxRSS     int64
	threads    int // the supervisor's, settled after every worker was ready
	rss        int64
	stop       time.Duration // stop signal to every process gone
	err        error
}

// rate is workers ready per second.
func (s *spawnRun) rate() float64 {
	if s.total <= 0 {
		return 0
	}
	return float64(s.n) / s.total.Seconds()
}

// reapRun is what the reap helper measured in one mode.
type reapRun struct {
	Mode          string        `json:"mode"`
	From          string        `json:"from"` // what latency counts from: fromExit, or fromSignal and why
	Round         int           `json:"round"`
	Paced         int           `json:"paced"`
	PacedP50      time.Duration `json:"paced_p50"`
	PacedP99      time.Duration `json:"paced_p99"`
	PacedMax      time.Duration `json:"paced_max"`
	Flood         int           `json:"flood"`
	FloodP50      time.Duration `json:"flood_p50"`
	FloodP99      time.Duration `json:"flood_p99"`
	FloodMax      time.Duration `json:"flood_max"` // release to the last status
	Threads       int           `json:"threads"`   // with every flood child alive and waited for
	ThreadsBefore int           `json:"threads_before"`
	Zombies       int           `json:"zombies"` // after the flood
	Lost          int           `json:"lost"`    // exits never seen
	SpawnRate     float64       `json:"spawn_rate"`
	Err           string        `json:"error,omitempty"`
}

// What a reap latency counts from.
const (
	fromExit   = "exit"
	fromSignal = "signal or release"
)

// peer is a peer server and how it was found.
type peer struct {
	name    string
	path    string // empty: skipped
	version string
	how     string // "already installed", "installed by apt-get install …", or why it is missing
}

// machine describes where the run happened.
type machine struct {
	nproc  int
	cpu    string
	kernel string
	goVer  string
	// load averages (1, 5, 15 minutes) at the start and the end of the run,
	// as /proc/loadavg says: how busy the shared machine was
	loadStart, loadEnd string
}

// results is everything a run of the harness measured.
type results struct {
	cfg        config
	command    string
	commit     string // the repository's HEAD, "+dirty" with changes; empty if unknown
	began      time.Time
	wall       time.Duration
	machine    machine
	peers      []peer
	throughput []*loadRun
	restarts   []*loadRun
	upgrades   []*loadRun
	spawn      []*spawnRun
	footprint  []*spawnRun
	// footprintRaw is the raw baseline of footprint's stop: the same
	// workers started by os.StartProcess, SIGTERMed and waited for.
	footprintRaw []*spawnRun
	reap         []*reapRun
	traffic      []*trafficRun
	reconnects   []*reconnectRun
	plots        map[string]string // scenario → SVG file name
	notes        []string          // skipped scenarios and peers, what went wrong
	skipped      []string          // scenarios skipped because they would not fit in -limit
	noReuse      string            // why handoff -reuseport was not measured; empty if it was
}

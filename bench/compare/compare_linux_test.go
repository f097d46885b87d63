package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "reap" {
		os.Exit(reapHelper())
	}
	// As in main: what a subject leaves behind becomes ours, to be swept.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		panic(err)
	}
	// goleak ends the process with os.Exit, which runs no deferred call:
	// the binaries' directory goes in its Cleanup.
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		if built.dir != "" {
			os.RemoveAll(built.dir)
		}
		os.Exit(code)
	}))
}

var built struct {
	once sync.Once
	bins binaries
	dir  string
	err  error
}

// testHarness is a harness with small figures, its binaries built once
// for the package.
func testHarness(t *testing.T) *harness {
	t.Helper()
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "compare-test-"); built.err == nil {
			built.bins, built.err = build(context.Background(), built.dir)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	cfg, err := parseFlags([]string{"-rounds", "1", "-clients", "4", "-every", "300ms", "-steady", "200ms",
		"-window", "200ms", "-restarts", "2", "-upgrades", "2", "-paced", "3", "-flood", "20"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cfg.warmup, cfg.tail = 100*time.Millisecond, 200*time.Millisecond
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &harness{cfg: cfg, self: self, bins: built.bins, peers: map[string]peer{}, tmp: t.TempDir(),
		logw: t.Output(), began: time.Now(), deadline: time.Now().Add(time.Minute)}
}

// testContext is bounded by the test's deadline, less a margin to report.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

// checkClean fails the test if it leaves a child process or a descriptor.
// Call it first, so that its cleanup runs last.
func checkClean(t *testing.T) {
	t.Helper()
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	t.Cleanup(func() {
		if after := fds(); after > before {
			t.Errorf("%d descriptors open after the test, %d before", after, before)
		}
		if kids, err := orphans.Children(); err != nil || len(kids) > 0 {
			t.Errorf("children left: %v (%v)", kids, err)
		}
	})
}

func installed(name, fallback string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if _, err := os.Stat(fallback); err == nil {
		return fallback
	}
	return ""
}

// TestRestarts runs every subject of the restarts and upgrades scenarios
// briefly, for real: each starts, answers, takes its signals, and stops
// without leaving a process behind; handoff fails no request, and neither
// does tableflip with handoff's drain. gunicorn and
// nginx run only when installed.
func TestRestarts(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the servers")
	}
	h := testHarness(t)
	if p := installed("gunicorn", "/usr/bin/gunicorn"); p != "" {
		h.peers["gunicorn"] = peer{name: "gunicorn", path: p}
	} else {
		t.Log("gunicorn is not installed: not run")
	}
	if p := installed("nginx", "/usr/sbin/nginx"); p != "" {
		h.peers["nginx"] = peer{name: "nginx", path: p}
	} else {
		t.Log("nginx is not installed: not run")
	}
	for _, sc := range []string{scRestarts, scUpgrades} {
		for _, mk := range h.restartSubjects(sc == scUpgrades) {
			s, err := mk()
			if err != nil {
				t.Fatal(err)
			}
			t.Run(sc+"/"+s.name(), func(t *testing.T) {
				checkClean(t)
				r := h.restartRun(testContext(t), sc, s, 1, 2)
				if r.err != nil || r.res == nil || len(r.signals) != 2 || r.res.Stats().OK() == 0 || r.leftover != 0 {
					t.Fatalf("run: err %v, signals %d, leftover %d, result %v", r.err, len(r.signals), r.leftover, r.res != nil)
				}
				if len(r.took)+r.pending+len(r.failed) != 2 {
					t.Errorf("2 signals, but %d seen complete, %d pending, %d failed", len(r.took), r.pending, len(r.failed))
				}
				if s.name() == "handoff" && sc == scRestarts && (r.rolls == nil || r.rolls.folded(2) != 0 || len(r.took) != 2) {
					t.Errorf("paced by completion, handoff's 2 signals: rolls %+v, took %v; want 2 rolls, none folded", r.rolls, r.took)
				}
				if f := r.res.Stats().Failed(); (s.name() == "handoff" || s.name() == nameTableflipDrain) && f > 0 {
					t.Errorf("%s failed %d requests; first: %+v", s.name(), f, r.res.Failures[0])
				}
				t.Logf("%s: %d requests, %d failed, %d seen complete", s.name(), r.res.Stats().Requests,
					r.res.Stats().Failed(), len(r.took))
			})
		}
	}
}

// TestRollsTimedFromTheirStart paces SIGHUPs by the clock faster than
// handoff rolls (a roll lasts at least its canary's accept window, 1 s):
// signals that land during a roll are folded, and each roll is still timed
// from its own start, never shorter than the accept window. The first
// `roll complete` after a signal (the previous roll's) would be.
func TestRollsTimedFromTheirStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	checkClean(t)
	h := testHarness(t)
	h.cfg.pace = paceClock
	const signals = 6
	s := &handoffSubject{bin: h.bins.example, workers: 2}
	r := h.restartRun(testContext(t), scRestarts, s, 1, signals)
	if r.err != nil || r.res == nil || r.rolls == nil {
		t.Fatalf("run: err %v, result %v, rolls %v", r.err, r.res != nil, r.rolls)
	}
	if r.rolls.started >= signals || r.rolls.folded(signals) == 0 {
		t.Errorf("%d signals %v apart started %d rolls: none folded", signals, h.cfg.every, r.rolls.started)
	}
	if len(r.took) == 0 {
		t.Fatal("no roll completed")
	}
	for _, d := range r.took {
		if d < time.Second {
			t.Errorf("a roll took %v, less than the canary's accept window: %v", d, r.took)
		}
	}
	t.Logf("%d signals: %d rolls started, %d folded, took %v", signals, r.rolls.started, r.rolls.folded(signals), r.took)
}

// TestThroughput runs the throughput subjects briefly.
func TestThroughput(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the servers")
	}
	checkClean(t)
	h := testHarness(t)
	res := &results{}
	h.runThroughput(testContext(t), res)
	if want := len(h.throughputSubjects()); len(res.throughput) != want {
		t.Fatalf("%d runs, want %d", len(res.throughput), want)
	}
	for _, r := range res.throughput {
		if r.err != nil || r.res == nil || r.res.Stats(r.steady).OK() == 0 || r.res.Stats().Failed() > 0 {
			t.Errorf("%s: err %v, result %v", r.subject, r.err, r.res != nil)
		}
	}
}

// TestSpawn starts a few workers both ways, and reads the supervisor's
// footprint.
func TestSpawn(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	checkClean(t)
	h := testHarness(t)
	ctx := testContext(t)
	for _, r := range []*spawnRun{h.handoffSpawn(ctx, 3, 1), h.rawSpawn(ctx, 3, 1)} {
		if r.err != nil || len(r.per) != 3 || r.total <= 0 {
			t.Errorf("%s: err %v, %d ready, total %v", r.who, r.err, len(r.per), r.total)
		}
		if r.who == "handoff" && (r.threads < 1 || r.rss <= 0 || r.maxThreads < r.threads) {
			t.Errorf("handoff's footprint: threads %d (max %d), rss %d", r.threads, r.maxThreads, r.rss)
		}
	}
}

// TestReap runs the reap helper (this test binary, re-executed) in every
// mode with a few children: no exit is lost and no zombie is left.
func TestReap(t *testing.T) {
	checkClean(t)
	h := testHarness(t)
	for _, mode := range reapModes {
		r := h.reapBench(testContext(t), mode, 1)
		if r.Err != "" || r.Lost != 0 || r.Zombies != 0 || r.PacedP50 <= 0 || r.FloodP50 <= 0 || r.FloodMax <= 0 {
			t.Errorf("%s: %+v", mode, r)
		}
	}
}

// TestSweep: a process that outlives its parent becomes the harness's
// child, and sweep kills and reaps it.
func TestSweep(t *testing.T) {
	checkClean(t)
	p, err := startProc("sh", "/bin/sh", []string{"-c", "sleep 60 </dev/null >/dev/null 2>&1 & echo $!"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { orphans.Sweep() }) // before checkClean's check, on any path
	ln, err := p.log.cursor().line(testContext(t))
	if err != nil {
		t.Fatal(err)
	}
	<-p.exited // sh exits once it has started sleep in the background
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, ppid, err := procStat(atoi(t, ln.text)); err != nil || ppid != os.Getpid() {
		t.Errorf("the orphaned sleep (pid %s) has parent %d, not the harness %d (%v)", ln.text, ppid, os.Getpid(), err)
	}
	alive, zombies, err := orphans.Sweep()
	if err != nil || alive != 1 || zombies != 0 {
		t.Errorf("sweep: %d alive, %d zombies, %v; want the orphaned sleep", alive, zombies, err)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestParseEvent(t *testing.T) {
	ev, ok := parseEvent(`{"level":"info","ts":1795682342.5,"msg":"worker ready","worker":0,"pid":7080,"generation":1,"after":0.010818979}`)
	if !ok || ev.Msg != "worker ready" || ev.Pid != 7080 || ev.Generation != 1 || secs(ev.After) != 10818979*time.Nanosecond ||
		ev.TS != 1795682342.5 {
		t.Errorf("parsed %+v, %v", ev, ok)
	}
	// handoff's own JSON format: ts in ISO 8601.
	ev, ok = parseEvent(`{"level":"info","ts":"2026-11-21T23:59:02.500Z","msg":"worker ready","worker":0,"pid":7080}`)
	if !ok || ev.TS != 1795305542.5 {
		t.Errorf("parsed %+v, %v; want ts 1795305542.5", ev, ok)
	}
	for _, bad := range []string{"panic: boom", `{"level":"info"}`, `{"msg":3}`} {
		if _, ok := parseEvent(bad); ok {
			t.Errorf("parseEvent(%q) succeeded", bad)
		}
	}
}

// TestHasFlag: the probe that guards handoff -reuseport reads a program's
// -h usage, so that a build of the example without the flag is skipped
// with a note instead of failing the run.
func TestHasFlag(t *testing.T) {
	dir := t.TempDir()
	script := func(name, usage string) string {
		p := filepath.Join(dir, name)
		body := "#!/bin/sh\ncat >&2 <<'EOF'\n" + usage + "EOF\nexit 0\n"
		if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	with := script("with", "Usage of example:\n  -listen value\n    \taddress\n  -reuseport\n    \tgive each worker slot a socket\n")
	without := script("without", "Usage of example:\n  -listen value\n    \taddress, not -reuseport-like\n  -reuseports\n")
	ctx := testContext(t)
	if !hasFlag(ctx, with, "reuseport") {
		t.Error("hasFlag missed -reuseport")
	}
	if hasFlag(ctx, without, "reuseport") {
		t.Error("hasFlag found -reuseport in a usage without it")
	}
	if hasFlag(ctx, filepath.Join(dir, "missing"), "reuseport") {
		t.Error("hasFlag found a flag in a program that does not exist")
	}
	h := testHarness(t)
	t.Logf("the example built from ../ takes -reuseport: %v", h.bins.reusePort)
}

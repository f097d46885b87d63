//go:build unix

package supervisor_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

func init() {
	// newok, newfails and badflags are new builds of a supervisor program
	// in an upgrade's preflight run: New succeeds (and ends the run), New
	// fails, or the program rejects its argv (the test binary's -test.*
	// flags) before it gets to New.
	helpers["newok"] = func() int {
		if _, err := supervisor.New(supervisor.Command{Path: "/bin/true"}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0 // not reached in a preflight run
	}
	helpers["newfails"] = func() int {
		if _, err := supervisor.New(supervisor.Command{Path: "/bin/true"}, supervisor.WithWorkers(0)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return 0
	}
	helpers["badflags"] = func() int {
		fs := flag.NewFlagSet("new-supervisor", flag.ContinueOnError)
		fs.Int("workers", 1, "")
		if err := fs.Parse(os.Args[1:]); err != nil {
			return 2
		}
		if _, err := supervisor.New(supervisor.Command{Path: "/bin/true"}); err != nil {
			return 1
		}
		return 0
	}
	// watchdog says it is ready, pings the watchdog for TEST_PING_FOR,
	// then stops pinging while it keeps serving: a hung worker. Its reply
	// line is the watchdog interval it was given. With TEST_IGNORE_ABRT it
	// ignores SIGABRT, so only SIGKILL ends it.
	helpers["watchdog"] = func() int {
		if os.Getenv("TEST_IGNORE_ABRT") != "" {
			signal.Ignore(syscall.SIGABRT)
		}
		d, ok := worker.WatchdogInterval()
		pingFor, _ := time.ParseDuration(os.Getenv("TEST_PING_FOR"))
		readyAfter, _ := time.ParseDuration(os.Getenv("TEST_READY_AFTER"))
		go func() {
			time.Sleep(readyAfter) // a slow start

			ctx, cancel := context.WithTimeout(context.Background(), pingFor)
			defer cancel()
			if err := worker.Ready(); err != nil {
				panic(err)
			}
			if err := worker.Watchdog(ctx); err != nil {
				panic(err)
			}
		}()
		return serveWith(false, func() string { return fmt.Sprintf("%v %t", d, ok) })
	}
}

// TestWatchdogReplacesHungWorker: a worker that stops pinging gets the
// watchdog signal, then SIGKILL if it ignores it, and is replaced; while it
// pinged, it was left alone.
func TestWatchdogReplacesHungWorker(t *testing.T) {
	const (
		interval = 200 * time.Millisecond
		pingFor  = time.Second
	)
	for _, tc := range []struct {
		name   string
		env    string
		signal syscall.Signal // what ended it
	}{
		{"aborts", "", syscall.SIGABRT},
		{"ignores SIGABRT", "TEST_IGNORE_ABRT=1", syscall.SIGKILL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := deadline(t)
			f := newFixture(t, "watchdog", []string{"TEST_PING_FOR=" + pingFor.String(), tc.env, "GOTRACEBACK=single"},
				supervisor.WithReadiness(supervisor.ReadyOnNotify()),
				supervisor.WithWatchdog(interval),
				supervisor.WithWatchdogSignal(syscall.SIGABRT, 300*time.Millisecond))
			f.run(ctx)
			w := f.waitReady(ctx)
			if got := f.ask(); got != interval.String()+" true" {
				t.Fatalf("worker's watchdog: %q, want %v enabled for its own pid", got, interval)
			}
			st := f.waitExit(ctx)
			if st.Pid != w.Pid {
				t.Fatalf("exit of %d, want the hung worker %d", st.Pid, w.Pid)
			}
			// A Go program dies of SIGABRT with exit status 2 after dumping
			// its goroutines.
			if tc.signal == syscall.SIGABRT && st.Code != 2 && st.Signal != syscall.SIGABRT ||
				tc.signal == syscall.SIGKILL && st.Signal != syscall.SIGKILL {
				t.Fatalf("hung worker ended with %v, want it ended by %v", st, tc.signal)
			}
			// Pings every interval/2 until pingFor: the last one may come
			// interval/2 early, and the watchdog waits a full interval.
			if up := st.Time.Sub(w.Started); up < pingFor+interval/2 {
				t.Fatalf("worker killed after %v, while it still pinged (for %v)", up, pingFor)
			}
			nw := f.waitReady(ctx)
			if nw.Slot != w.Slot || nw.Pid == w.Pid {
				t.Fatalf("replacement %+v for %+v", nw, w)
			}
			if s := f.s.Stats(); s.Exits.Watchdog != 1 {
				t.Fatalf("watchdog exits %d, want 1", s.Exits.Watchdog)
			}
		})
	}
}

// TestMaxLifetimeRecycles: workers are replaced at their maximum lifetime,
// each only once its replacement is ready, in the same generation.
func TestMaxLifetimeRecycles(t *testing.T) {
	ctx := deadline(t)
	f := newRollFixture(t, nil, supervisor.WithWorkers(2),
		supervisor.WithMaxLifetime(300*time.Millisecond, 100*time.Millisecond))
	f.run(ctx)
	first := map[int]bool{f.waitReady(ctx).Pid: true, f.waitReady(ctx).Pid: true}
	for range 4 {
		w := f.waitReady(ctx)
		if first[w.Pid] || w.Generation != 1 {
			t.Fatalf("recycled worker %+v: want a new pid in generation 1", w)
		}
	}
	// The 4 it replaced are retired once their replacements are ready (after
	// OnReady): each then has exited or is draining.
	st := waitStats(ctx, t, f.s, "4 recycled workers retired", func(st supervisor.Stats) bool {
		return st.Exits.Recycled+uint64(len(st.Retiring)) >= 4
	})
	if st.Generation != 1 {
		t.Fatalf("stats %+v: want at least 4 recycled in generation 1", st)
	}
	// Once both slots have served (under load, a first worker may be
	// recycled before the other one is up), a worker retires only while
	// two others are ready.
	ready, served := map[int64]bool{}, map[int64]bool{}
	for _, e := range f.logs.All() {
		pid, _ := e.ContextMap()["pid"].(int64)
		full := len(served) >= 2
		switch e.Message {
		case "worker ready":
			ready[pid] = true
			slot, _ := e.ContextMap()["worker"].(int64)
			served[slot] = true
		case "retiring worker":
			delete(ready, pid)
			if full && len(ready) < 2 {
				t.Fatalf("retired pid %d with only %d workers ready", pid, len(ready))
			}
		}
	}
}

// TestCrashLoop: a command that exits at once, 1,000 times in a row. The
// backoff reaches its cap, the supervisor answers calls throughout, and the
// log gets a handful of lines, not 1,000.
func TestCrashLoop(t *testing.T) {
	ctx := deadline(t)
	const exits = 1000
	core, logs := observer.New(zapcore.InfoLevel)
	spawned := make(chan supervisor.WorkerInfo, exits+16)
	s, err := supervisor.New(supervisor.Command{Path: "/bin/false"},
		supervisor.WithLogger(zap.New(core)),
		supervisor.WithBackoff(time.Millisecond, 4*time.Millisecond),
		// Every exit is a start failure, however slow the machine: with
		// the default 1s, a /bin/false that took a second to run under
		// load counted as having been up.
		supervisor.WithMinUptime(time.Hour),
		supervisor.WithHooks(supervisor.Hooks{AfterSpawn: func(w supervisor.WorkerInfo) { spawned <- w }}))
	if err != nil {
		t.Fatal(err)
	}
	var before, after unix.Rusage
	unix.Getrusage(unix.RUSAGE_SELF, &before)
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	var last time.Time
	for i := range exits {
		var w supervisor.WorkerInfo
		select {
		case w = <-spawned:
		case <-ctx.Done():
			t.Fatalf("%d starts before the deadline", i)
		}
		// Start times, not when the test got the events: each start comes
		// at least the backoff after the previous worker's exit.
		if i > 10 && w.Started.Sub(last) < 4*time.Millisecond {
			t.Fatalf("start %d came %v after the previous one, under the backoff cap", i, w.Started.Sub(last))
		}
		last = w.Started
		if i%100 == 0 {
			if st := s.Stats(); st.StartFailures < uint64(i) {
				t.Fatalf("stats at start %d: %+v", i, st)
			}
		}
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	unix.Getrusage(unix.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	lines := logs.FilterMessage("worker died; restarting").Len()
	t.Logf("%d exits: %d log lines at info or above, supervisor CPU %v (%v per exit)", exits, lines, cpu, cpu/exits)
	if lines > 16 {
		t.Fatalf("%d log lines for %d deaths: the log is not rate-limited", lines, exits)
	}
}

// TestGivesUpAfterMaxStartFailures: with a start limit, Run stops and says
// why; a command deleted after New is a start failure like any other.
func TestGivesUpAfterMaxStartFailures(t *testing.T) {
	gone := filepath.Join(t.TempDir(), "vanishing")
	b, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gone, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
		before           func()
	}{
		{"exits at once", "/bin/false", "exit status 1", nil},
		{"deleted after New", gone, "no such file", func() { os.Remove(gone) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := deadline(t)
			fds := fdCount(t)
			s, err := supervisor.New(supervisor.Command{Path: tc.path},
				supervisor.WithLogger(zap.NewNop()),
				supervisor.WithBackoff(time.Millisecond, 2*time.Millisecond),
				supervisor.WithMaxStartFailures(5))
			if err != nil {
				t.Fatal(err)
			}
			if tc.before != nil {
				tc.before()
			}
			err = s.Run(ctx)
			if err == nil || !strings.Contains(err.Error(), "failed to start 5 times") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run: %v, want it to give up after 5 failures, saying %q", err, tc.want)
			}
			if got := fdCount(t); got > fds {
				t.Errorf("fds: %d before, %d after", fds, got)
			}
		})
	}
}

// TestUpgradeExecFailureKeepsRunning: an upgrade whose exec fails after a
// good preflight (the binary lost its exec bit in between) leaves the
// supervisor running as it was: its workers re-adopted, still restarted
// when they die, and a later roll works.
func TestUpgradeExecFailureKeepsRunning(t *testing.T) {
	ctx := deadline(t)
	// The new build passes its preflight (the test binary as a program
	// whose New succeeds), then loses its exec bit.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(t.TempDir(), "new-supervisor")
	body := "#!/bin/sh\nchmod -x \"$0\"\nexec " + exe + " \"$@\"\n"
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	// The program's own registration for a signal the supervisor handles
	// too must outlive a failed exec.
	mine := make(chan os.Signal, 16)
	signal.Notify(mine, syscall.SIGHUP)
	defer signal.Stop(mine)
	f := newFixture(t, "serve", nil, supervisor.WithWorkers(2), supervisor.WithMinUptime(0),
		supervisor.WithUpgradePath(script), supervisor.WithSignals())
	f.run(ctx)
	w1, w2 := f.waitSpawn(ctx), f.waitSpawn(ctx)
	t.Setenv(helperEnv, "newok") // for the preflight run; the workers' env is set
	fds := fdCount(t)
	err = f.s.Upgrade(ctx)
	if err == nil || !strings.Contains(err.Error(), "permission denied") {
		t.Fatalf("Upgrade: %v, want the exec's permission error", err)
	}
	if got := fdCount(t); got > fds {
		t.Errorf("fds: %d before the failed upgrade, %d after", fds, got)
	}
	st := f.s.Stats()
	if len(st.Workers) != 2 {
		t.Fatalf("after the failed upgrade: %+v", st)
	}
	// The re-adopted workers are watched: a death is seen and replaced.
	if err := syscall.Kill(w1.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if ex := f.waitExit(ctx); ex.Pid != w1.Pid {
		t.Fatalf("exit of %d, want %d", ex.Pid, w1.Pid)
	}
	if nw := f.waitSpawn(ctx); nw.Slot != w1.Slot {
		t.Fatalf("replacement %+v for slot %d", nw, w1.Slot)
	}
	if err := f.s.Roll(ctx); err != nil {
		t.Fatalf("roll after the failed upgrade: %v", err)
	}
	for _, w := range f.s.Stats().Workers {
		if w.Pid == w2.Pid || w.Generation != 2 {
			t.Fatalf("after the roll: %+v", w)
		}
	}
	// The supervisor still handles its signals (SIGHUP rolls), and so does
	// the rest of the program.
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for f.waitSpawn(ctx).Generation != 3 { // earlier starts first
	}
	recv(ctx, t, mine, "SIGHUP on the program's own channel after a failed exec")
}

// TestUpgradePreflightRefusesBadBuilds: the preflight runs the new build
// with the real argv as far as New; a build that rejects its flags or whose
// New fails is refused, and the supervisor goes on as it was.
func TestUpgradePreflightRefusesBadBuilds(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ helper, want string }{
		{"badflags", "exit status 2"},
		{"newfails", "exit status 1"},
		{"exit", "did not reach supervisor.New"}, // a program that exits 0 without New
	} {
		t.Run(tc.helper, func(t *testing.T) {
			ctx := deadline(t)
			f := newFixture(t, "serve", nil, supervisor.WithWorkers(2), supervisor.WithUpgradePath(exe))
			f.run(ctx)
			w1, w2 := f.waitSpawn(ctx), f.waitSpawn(ctx)
			t.Setenv(helperEnv, tc.helper)
			err := f.s.Upgrade(ctx)
			if err == nil || !strings.Contains(err.Error(), "preflight") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Upgrade to a build that fails its preflight: %v, want the preflight's %q", err, tc.want)
			}
			st := f.s.Stats()
			if len(st.Workers) != 2 || st.Workers[0].Pid != w1.Pid || st.Workers[1].Pid != w2.Pid {
				t.Fatalf("after a refused upgrade: %+v", st.Workers)
			}
		})
	}
}

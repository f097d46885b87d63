//go:build unix

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
)

func init() {
	// slowterm serves like serve, but takes TEST_DRAIN to exit after
	// SIGTERM, as a worker draining its connections does.
	helpers["slowterm"] = func() int {
		d, _ := time.ParseDuration(os.Getenv("TEST_DRAIN"))
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		ls, err := listener.Inherit()
		if err != nil {
			return 3
		}
		for _, l := range ls {
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintln(c, "slow")
					c.Close()
				}
			}()
		}
		<-term
		time.Sleep(d)
		return 0
	}
}

// builds decides, per generation and slot, whether a spawn is a broken
// build: the test's stand-in for what is installed when a roll starts.
type builds struct {
	mu     sync.Mutex
	broken map[[2]uint64]string // {generation, slot} → env that breaks it
}

func (b *builds) breakAt(gen uint64, slot int, env string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broken == nil {
		b.broken = map[[2]uint64]string{}
	}
	b.broken[[2]uint64{gen, uint64(slot)}] = env
}

func (b *builds) beforeSpawn(sp *supervisor.Spawn) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if env, ok := b.broken[[2]uint64{sp.Generation, uint64(sp.Worker)}]; ok {
		sp.Env = append(sp.Env, env)
	}
	return nil
}

// waitStats polls the table until cond holds, or fails at the deadline.
func waitStats(ctx context.Context, t *testing.T, s *supervisor.Supervisor, what string, cond func(supervisor.Stats) bool) supervisor.Stats {
	t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.Stats()
		if cond(st) {
			return st
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s: %+v", what, st)
		}
	}
}

// TestFailedRollLeavesOneGeneration: a roll whose second new worker fails
// (the first one took its slot already) puts that slot back on the previous
// generation; the next roll gets a new number and replaces every worker.
func TestFailedRollLeavesOneGeneration(t *testing.T) {
	ctx := deadline(t)
	var b builds
	b.breakAt(2, 1, "TEST_FAIL_GEN=2")
	f := newRollFixture(t, nil, supervisor.WithWorkers(2), supervisor.WithReadyTimeout(5*time.Second))
	f.before = b.beforeSpawn
	f.run(ctx)
	f.waitReady(ctx)
	f.waitReady(ctx)
	err := f.s.Roll(ctx) // slot 0 takes generation 2, slot 1 fails
	if err == nil || !strings.Contains(err.Error(), "exited before it was ready") {
		t.Fatalf("Roll: %v, want the failure of slot 1", err)
	}
	st := waitStats(ctx, t, f.s, "no roll", func(st supervisor.Stats) bool { return !st.Rolling })
	if st.Generation != 1 || len(st.Workers) != 2 {
		t.Fatalf("after the failed roll: %+v", st)
	}
	for _, w := range st.Workers {
		if w.Generation != 1 {
			t.Fatalf("after the failed roll to 2, slot %d runs generation %d, want 1", w.Slot, w.Generation)
		}
	}
	if err := f.s.Roll(ctx); err != nil {
		t.Fatalf("second roll: %v", err)
	}
	st = f.s.Stats()
	if st.Generation <= 2 || len(st.Workers) != 2 {
		t.Fatalf("after the second roll: generation %d (want a new number above 2), %+v", st.Generation, st)
	}
	for _, w := range st.Workers {
		if w.Generation != st.Generation || w.State != supervisor.Ready {
			t.Fatalf("after the second roll to %d: worker %+v", st.Generation, w)
		}
	}
}

// TestVetoedSlotComesBackAtNextRoll: OnExit vetoes a restart; the slot
// stays empty until the next roll, which fills it.
func TestVetoedSlotComesBackAtNextRoll(t *testing.T) {
	ctx := deadline(t)
	spawned := make(chan supervisor.WorkerInfo, 16)
	exited := make(chan reap.Status, 16)
	f := newFixture(t, "serve", nil, supervisor.WithWorkers(2), supervisor.WithHooks(supervisor.Hooks{
		AfterSpawn: func(w supervisor.WorkerInfo) { spawned <- w },
		OnExit:     func(w supervisor.WorkerInfo, st reap.Status) bool { exited <- st; return false },
	}))
	f.run(ctx)
	w := recv(ctx, t, spawned, "a worker")
	recv(ctx, t, spawned, "a worker")
	syscall.Kill(w.Pid, syscall.SIGKILL)
	recv(ctx, t, exited, "the vetoed exit")
	if st := f.s.Stats(); len(st.Workers) != 1 {
		t.Fatalf("after the veto: %+v", st)
	}
	if err := f.s.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	st := f.s.Stats()
	if len(st.Workers) != 2 {
		t.Fatalf("after the roll that follows a veto: %d workers, want 2: %+v", len(st.Workers), st.Workers)
	}
	for _, w := range st.Workers {
		if w.Generation != st.Generation {
			t.Fatalf("after the roll: %+v in generation %d", w, st.Generation)
		}
	}
}

// TestAbortedRollRetiresGracefully: a new worker that accepts but never
// says it is ready is asked to stop (SIGTERM) when the roll fails, not
// killed with whatever it accepted.
func TestAbortedRollRetiresGracefully(t *testing.T) {
	ctx := deadline(t)
	f := newRollFixture(t, []string{"TEST_MUTE_GEN=2"}, supervisor.WithReadyTimeout(2*time.Second))
	exits := make(chan supervisor.ExitEvent, 16)
	f.extra.AfterExit = func(e supervisor.ExitEvent) { exits <- e }
	f.run(ctx)
	f.waitReady(ctx)
	if err := f.s.Roll(ctx); err == nil {
		t.Fatal("roll to a generation that is never ready succeeded")
	}
	e := recv(ctx, t, exits, "the new worker's exit")
	if !e.Asked || e.Status.Signal != 0 || e.Status.Code != 0 {
		t.Fatalf("the aborted roll's worker ended %+v, want a clean exit after the stop signal", e)
	}
	if st := f.s.Stats(); st.Exits.Retired != 1 || st.Exits.Signal+st.Exits.Failed+st.Exits.Clean != 0 {
		t.Fatalf("exits %+v, want the one retired", st.Exits)
	}
}

// TestStopTimeoutZeroNeverKills: WithStopTimeout(0) means no limit, for a
// retired worker as for a stop.
func TestStopTimeoutZeroNeverKills(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "slowterm", []string{"TEST_DRAIN=300ms"}, supervisor.WithStopTimeout(0))
	exits := make(chan supervisor.ExitEvent, 16)
	f.extra.AfterExit = func(e supervisor.ExitEvent) { exits <- e }
	f.run(ctx)
	w := f.waitSpawn(ctx)
	f.ask() // serving, so its SIGTERM handler is in place
	if err := f.s.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	e := recv(ctx, t, exits, "the retired worker's exit")
	if e.Worker.Pid != w.Pid || e.Status.Signal != 0 || e.Status.Code != 0 {
		t.Fatalf("worker %d retired with no stop timeout ended %+v, want a clean exit", w.Pid, e)
	}
}

// TestWatchdogArmedAtReady: a worker that takes longer than the watchdog
// interval to become ready is not a hung worker; the ready timeout covers
// its start.
func TestWatchdogArmedAtReady(t *testing.T) {
	ctx := deadline(t)
	const interval = 100 * time.Millisecond
	f := newFixture(t, "watchdog", []string{"TEST_PING_FOR=1h", "TEST_READY_AFTER=" + (5 * interval).String()},
		supervisor.WithReadiness(supervisor.ReadyOnNotify()),
		supervisor.WithWatchdog(interval),
		supervisor.WithWatchdogSignal(syscall.SIGKILL, 0))
	f.run(ctx)
	select {
	case w := <-f.ready:
		if st := f.s.Stats(); st.Exits.Watchdog != 0 {
			t.Fatalf("worker %d ready after %d watchdog kills", w.Pid, st.Exits.Watchdog)
		}
	case st := <-f.exited:
		t.Fatalf("worker %d ended (%v) before it was ready: the watchdog ran during its start", st.Pid, st)
	case <-ctx.Done():
		t.Fatal("no worker ready")
	}
}

// TestHookCallsBack: a hook that calls the supervisor does not deadlock it:
// Stats answers, and what cannot be answered from inside a hook says so.
func TestHookCallsBack(t *testing.T) {
	ctx := deadline(t)
	var s *supervisor.Supervisor
	got := make(chan string, 4)
	f := newFixture(t, "serve", nil, supervisor.WithHooks(supervisor.Hooks{
		AfterSpawn: func(w supervisor.WorkerInfo) {
			st := s.Stats() // the table as the hook sees it: w in it
			got <- fmt.Sprintf("stats %d %v", st.Generation,
				slices.ContainsFunc(st.Workers, func(x supervisor.WorkerInfo) bool { return x.Pid == w.Pid }))
			rctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			got <- fmt.Sprintf("scale %v", s.Scale(rctx, 1))
		},
	}))
	s = f.s
	f.run(ctx)
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for _, want := range []string{"stats 1 true", "scale " + supervisor.ErrInHook.Error()} {
		select {
		case g := <-got:
			if !strings.HasPrefix(g, want) {
				t.Fatalf("from a hook: %q, want %q", g, want)
			}
		case <-wait.Done():
			t.Fatalf("a hook calling the supervisor got no answer: deadlock (waiting for %q)", want)
		}
	}
}

// TestCallsWhileAHookRuns is the rule for calls made while a hook runs:
// from the hook, Stats answers at once with the table as the hook sees it,
// Roll is refused with ErrInHook and changes nothing, and Shutdown begins
// the stop and returns ErrInHook; from another goroutine, Scale waits for
// the hook and is then served, and Stats shows its outcome as it returns.
func TestCallsWhileAHookRuns(t *testing.T) {
	ctx := deadline(t)
	var s *supervisor.Supervisor
	entered, release := make(chan supervisor.Stats, 1), make(chan struct{})
	fromHook := make(chan error, 2)
	f := newFixture(t, "serve", nil)
	f.extra.OnRollEnd = func(e supervisor.RollEvent) {
		switch e.Generation {
		case 2:
			entered <- s.Stats()
			<-release
			fromHook <- s.Roll(ctx)
		case 3:
			fromHook <- s.Shutdown(ctx)
		}
	}
	s = f.s
	f.run(ctx)
	f.waitReady(ctx)
	rolled := make(chan error, 1)
	go func() { rolled <- s.Roll(ctx) }()
	st := recv(ctx, t, entered, "the OnRollEnd hook")
	if st.Generation != 2 || st.Rolling || st.LastRoll == nil || st.LastRoll.Result != supervisor.RollCompleted {
		t.Errorf("Stats from OnRollEnd: generation %d, rolling %v, last roll %+v; want the completed roll to 2",
			st.Generation, st.Rolling, st.LastRoll)
	}

	// The hook holds the run goroutine: another goroutine's Scale waits.
	scaled := make(chan error, 1)
	go func() { scaled <- s.Scale(ctx, 2) }()
	select {
	case err := <-scaled:
		t.Errorf("Scale from another goroutine returned %v while the hook ran; want it to wait", err)
	default:
	}
	close(release)
	if err := recv(ctx, t, fromHook, "the hook's Roll"); !errors.Is(err, supervisor.ErrInHook) {
		t.Errorf("Roll from the hook: %v, want ErrInHook", err)
	}
	if err := recv(ctx, t, rolled, "the roll"); err != nil {
		t.Fatalf("Roll: %v", err)
	}
	if err := recv(ctx, t, scaled, "the Scale"); err != nil {
		t.Fatalf("Scale after the hook: %v", err)
	}
	if st := s.Stats(); len(st.Slots) != 2 || len(st.Workers) != 2 || st.Generation != 2 || st.Rolls.Completed != 1 {
		t.Fatalf("Stats as Scale(2) returns: %d slots, %d workers, generation %d, %d rolls; want 2, 2, 2, 1 (the hook's Roll changed nothing)",
			len(st.Slots), len(st.Workers), st.Generation, st.Rolls.Completed)
	}
	f.waitReady(ctx)

	// Shutdown from a hook: refused to wait, the stop goes on.
	go s.Roll(ctx)
	if err := recv(ctx, t, fromHook, "the hook's Shutdown"); !errors.Is(err, supervisor.ErrInHook) {
		t.Errorf("Shutdown from the hook: %v, want ErrInHook", err)
	}
	select {
	case <-s.Done():
	case <-ctx.Done():
		t.Fatal("Run did not end after a Shutdown from a hook")
	}
}

package supervisor_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/supervisor"
)

// TestModel is a seeded, replayable state-machine test of the worker
// table: random rolls to good and broken generations (crash at start, never
// ready, ready then crash inside the accept window), scaling up and down
// and worker crashes, with the invariants checked after every step: rolls
// end as their generation deserves, generation numbers only go up, every
// slot settles ready on the serving generation, a worker is replaced only
// while N others are ready, and no descriptor is left behind.
//
// HANDOFF_MODEL_SEED replays a seed; HANDOFF_MODEL_STEPS runs longer (CI
// runs 14 steps of one fixed seed).
func TestModel(t *testing.T) {
	seed := uint64(20261129)
	if v := os.Getenv("HANDOFF_MODEL_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("HANDOFF_MODEL_SEED=%q: %v", v, err)
		}
		seed = s
	}
	steps := 14
	if v := os.Getenv("HANDOFF_MODEL_STEPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("HANDOFF_MODEL_STEPS=%q: want a positive number", v)
		}
		steps = n
	}
	t.Logf("seed %d, %d steps (replay: HANDOFF_MODEL_SEED=%d)", seed, steps, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	ctx := deadline(t)
	fds := fdCount(t)
	var mu sync.Mutex
	behaviour := map[uint64]string{} // generation → env that breaks it ("" good)
	pending := ""                    // the behaviour of the next new generation
	f := newRollFixture(t, nil, supervisor.WithWorkers(2), supervisor.WithReadyTimeout(2*time.Second),
		supervisor.WithAcceptWindow(300*time.Millisecond), supervisor.WithMinUptime(0),
		supervisor.WithBackoff(10*time.Millisecond, 50*time.Millisecond))
	f.before = func(sp *supervisor.Spawn) error {
		mu.Lock()
		defer mu.Unlock()
		env, ok := behaviour[sp.Generation]
		if !ok {
			env = pending
			behaviour[sp.Generation] = env
		}
		if env != "" {
			sp.Env = append(sp.Env, fmt.Sprintf(env, sp.Generation))
		}
		return nil
	}
	rolls := make(chan supervisor.RollEvent, 64)
	f.extra.OnRollEnd = func(e supervisor.RollEvent) { rolls <- e }
	f.run(ctx)

	n, lastGen := 2, uint64(1)
	settle := func(step string) supervisor.Stats {
		t.Helper()
		return waitStats(ctx, t, f.s, step+": every slot ready on the serving generation", func(st supervisor.Stats) bool {
			if st.Rolling || len(st.Workers) != n {
				return false
			}
			for _, w := range st.Workers {
				if w.State != supervisor.Ready || w.Generation != st.Generation {
					return false
				}
			}
			return true
		})
	}
	settle("start")
	broken := []string{"TEST_FAIL_GEN=%d", "TEST_MUTE_GEN=%d", "TEST_CRASH_GEN=%d"}
	for i := range steps {
		before := settle(fmt.Sprintf("before step %d", i))
		switch op := rng.IntN(6); {
		case op <= 2: // roll, to a good or a broken generation
			kind := ""
			if rng.IntN(2) == 0 {
				kind = broken[rng.IntN(len(broken))]
			}
			mu.Lock()
			pending = kind
			mu.Unlock()
			err := f.s.Roll(ctx)
			e := recv(ctx, t, rolls, "the roll's end")
			t.Logf("step %d: roll to %d (%q): %v, %s", i, e.Generation, kind, err, e.Result)
			if e.Generation <= lastGen {
				t.Fatalf("step %d: roll to generation %d after %d: numbers must go up", i, e.Generation, lastGen)
			}
			lastGen = e.Generation
			st := settle(fmt.Sprintf("step %d", i))
			switch {
			case kind == "" && (err != nil || e.Result != supervisor.RollCompleted || st.Generation != e.Generation):
				t.Fatalf("step %d: roll to a good generation: %v, %s, serving %d", i, err, e.Result, st.Generation)
			case kind != "" && (err == nil || e.Result != supervisor.RollRolledBack || st.Generation != before.Generation):
				t.Fatalf("step %d: roll to a broken generation (%s): %v, %s, serving %d, want %d", i, kind, err, e.Result, st.Generation, before.Generation)
			}
		case op == 3: // scale
			n = 1 + rng.IntN(3)
			t.Logf("step %d: scale to %d", i, n)
			if err := f.s.Scale(ctx, n); err != nil {
				t.Fatal(err)
			}
		case op >= 4: // a worker crashes
			w := before.Workers[rng.IntN(len(before.Workers))]
			t.Logf("step %d: kill worker %d (slot %d)", i, w.Pid, w.Slot)
			syscall.Kill(w.Pid, syscall.SIGKILL)
			waitStats(ctx, t, f.s, "the crash seen", func(st supervisor.Stats) bool {
				for _, x := range st.Workers {
					if x.Pid == w.Pid {
						return false
					}
				}
				return true
			})
		}
		st := settle(fmt.Sprintf("after step %d", i))
		if st.Generation > lastGen {
			t.Fatalf("step %d: serving generation %d, never rolled to", i, st.Generation)
		}
	}

	// Replay the log: a worker is replaced only while the others are
	// ready, N being the slot count at the time.
	slots, ready := 2, map[int64]bool{}
	for _, e := range f.logs.All() {
		m := e.ContextMap()
		pid, _ := m["pid"].(int64)
		switch e.Message {
		case "scaling":
			slots = int(m["to"].(int64))
		case "worker ready":
			ready[pid] = true
		case "worker exited":
			delete(ready, pid)
		case "retiring worker":
			delete(ready, pid)
			if why, _ := m["why"].(string); why == "replaced by a new generation" && len(ready) < slots {
				t.Fatalf("worker %d replaced with only %d of %d ready", pid, len(ready), slots)
			}
		}
	}
	f.s.Close()
	<-f.runErr
	f.runErr <- nil
	f.sock.Close()
	if got := fdCount(t); got > fds {
		t.Errorf("fds: %d before, %d after", fds, got)
	}
	if kids := children(t); len(kids) > 0 {
		t.Errorf("children left (zombies or orphans): %v", kids)
	}
}

// children lists this process's children still in the process table
// (zombies included), from every thread's children list.
func children(t *testing.T) []string {
	t.Helper()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, task := range tasks {
		if c, err := os.ReadFile("/proc/self/task/" + task.Name() + "/children"); err == nil {
			kids = append(kids, strings.Fields(string(c))...)
		}
	}
	return kids
}

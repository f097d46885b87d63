//go:build unix

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

// The model's timings: a "slow" worker is ready only after modelSlow, later
// than the watchdog interval and within the ready timeout. A worker pings
// at half the watchdog interval: the interval leaves a loaded machine half
// a second of slack (a 500 ms watchdog, 250 ms of slack, fired at ready
// workers under a load of 8 on 2 cores).
const (
	modelWatchdog     = time.Second
	modelSlow         = 1200 * time.Millisecond
	modelReadyTimeout = 2500 * time.Millisecond
	modelWindow       = 300 * time.Millisecond
	// modelStuck bounds each wait for the table to settle: a slot still
	// not serving after it is stuck.
	modelStuck = 30 * time.Second
)

// errStuck: a roll did not end within modelStuck.
var errStuck = errors.New("the roll did not end")

func init() {
	// model serves like notify: READY=1, then WATCHDOG=1 at half the
	// watchdog interval. MODEL_MODE, which TestModel sets on the spawns
	// it breaks, changes that: "fail" exits 1 at once, "mute" never says
	// it is ready, "crash" exits 4 soon after READY=1 (inside the accept
	// window), "slow" says it is ready only after MODEL_SLOW.
	helpers["model"] = func() int {
		mode := os.Getenv("MODEL_MODE")
		if mode == "fail" {
			return 1
		}
		if mode != "mute" {
			go func() {
				if mode == "slow" {
					d, _ := time.ParseDuration(os.Getenv("MODEL_SLOW"))
					time.Sleep(d)
				}
				if err := worker.Ready(); err != nil {
					panic(err)
				}
				if mode == "crash" {
					time.Sleep(100 * time.Millisecond)
					os.Exit(4)
				}
				worker.Watchdog(context.Background()) // until the process ends
			}()
		}
		return serve(false)
	}
}

// modelPlan is what a roll's new generation does: the model's stand-in for
// the build a roll finds installed.
type modelPlan struct {
	mode string // "" (good), or a MODEL_MODE for the spawns it breaks
	from int    // the first slot the mode breaks: above 0, the canary passes
	veto bool   // OnCanary vetoes the generation
}

func (p modelPlan) String() string {
	switch {
	case p.veto:
		return "canary vetoed"
	case p.mode == "":
		return "good"
	case p.from > 0:
		return fmt.Sprintf("%s from slot %d", p.mode, p.from)
	}
	return p.mode
}

// fails reports whether a roll to p's generation must fail with n slots.
func (p modelPlan) fails(n int) bool {
	return p.veto || p.mode != "" && p.mode != "slow" && p.from < n
}

// model is the test's side of the supervisor's hooks: the plans of the
// rolls to come, the vetoes to make, and what the hooks saw that breaks an
// invariant.
type model struct {
	mu       sync.Mutex
	plans    []modelPlan // for the next rolls, in the order they start
	rolling  uint64      // the generation of the roll in progress; 0: none
	plan     modelPlan   // its plan
	vetoPids map[int]bool
	killed   map[int]bool // workers the test killed or hung itself
	bad      []string     // invariants broken, as seen by the hooks
	starts   chan supervisor.RollEvent
	ends     chan supervisor.RollEvent
}

func newModel() *model {
	return &model{
		vetoPids: map[int]bool{},
		killed:   map[int]bool{},
		starts:   make(chan supervisor.RollEvent, 1),
		ends:     make(chan supervisor.RollEvent, 64),
	}
}

func (m *model) hooks() supervisor.Hooks {
	return supervisor.Hooks{
		BeforeSpawn: func(sp *supervisor.Spawn) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			if p := m.plan; sp.Generation == m.rolling && p.mode != "" && sp.Worker >= p.from {
				sp.Env = append(sp.Env, "MODEL_MODE="+p.mode, "MODEL_SLOW="+modelSlow.String())
			}
			return nil
		},
		OnRollStart: func(e supervisor.RollEvent) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.rolling, m.plan = e.Generation, modelPlan{}
			if len(m.plans) > 0 {
				m.plan, m.plans = m.plans[0], m.plans[1:]
			}
			select {
			case m.starts <- e:
			default:
			}
		},
		OnRollEnd: func(e supervisor.RollEvent) {
			m.mu.Lock()
			m.rolling = 0
			m.mu.Unlock()
			m.ends <- e
		},
		OnCanary: func(w supervisor.WorkerInfo) error {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.plan.veto && w.Generation == m.rolling {
				return errors.New("the model vetoes it")
			}
			return nil
		},
		OnExit: func(w supervisor.WorkerInfo, _ reap.Status) bool {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.vetoPids[w.Pid] {
				delete(m.vetoPids, w.Pid)
				return false
			}
			return true
		},
		AfterExit: func(e supervisor.ExitEvent) {
			m.mu.Lock()
			defer m.mu.Unlock()
			// The stop timeout (30 s) is far off and every worker exits at
			// the stop signal: one the supervisor asked to go was not
			// killed, unless the test killed it.
			if e.Asked && e.Status.Signal == syscall.SIGKILL && !m.killed[e.Worker.Pid] {
				m.bad = append(m.bad, fmt.Sprintf("worker %d (slot %d, generation %d) asked to exit (%s) was SIGKILLed, not given the stop signal",
					e.Worker.Pid, e.Worker.Slot, e.Worker.Generation, e.Why))
			}
		},
	}
}

// queue sets the plans of the next rolls, dropping any left unused.
func (m *model) queue(p ...modelPlan) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.plans = p
	select {
	case <-m.starts:
	default:
	}
}

// kill sends sig to pid, marked as the test's doing; with veto, OnExit
// vetoes its restart.
func (m *model) kill(pid int, sig syscall.Signal, veto bool) {
	m.mu.Lock()
	m.killed[pid] = true
	if veto {
		m.vetoPids[pid] = true
	}
	m.mu.Unlock()
	syscall.Kill(pid, sig)
}

// takeEnds returns the roll ends reported so far. OnRollEnd runs before a
// roll's waiters are answered, so once Roll returned its end is here.
func (m *model) takeEnds() []supervisor.RollEvent {
	var es []supervisor.RollEvent
	for {
		select {
		case e := <-m.ends:
			es = append(es, e)
		default:
			return es
		}
	}
}

func (m *model) broken() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.bad...)
}

// strangers returns this process's children that are neither one of pids
// nor the supervisor's janitor, with their state (Z: a zombie).
func strangers(pids map[int]bool) ([]string, error) {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, task := range tasks {
		c, err := os.ReadFile("/proc/self/task/" + task.Name() + "/children")
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(c)) {
			pid, _ := strconv.Atoi(f)
			if pids[pid] {
				continue
			}
			cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
			if strings.HasPrefix(string(cmd), "handoff-janitor") {
				continue
			}
			state := "?"
			if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
				if i := strings.LastIndexByte(string(st), ')'); i > 0 && i+2 < len(st) {
					state = string(st[i+2])
				}
			}
			out = append(out, fmt.Sprintf("%d (state %s, %q)", pid, state, strings.ReplaceAll(string(cmd), "\x00", " ")))
		}
	}
	return out, nil
}

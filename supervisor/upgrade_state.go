package supervisor

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/cloexec"
	"github.com/handoff-dev/handoff/internal/connpass"
	"github.com/handoff-dev/handoff/internal/handover"
	"github.com/handoff-dev/handoff/listener"
	"go.uber.org/zap"
)

// upgradeState is the worker table as one program hands it to the next.
type upgradeState struct {
	Generation     uint64
	LastGeneration uint64 // numbers only go up, across upgrades too
	LastRollError  string
	Sockets        []stateSocket
	// SlotSockets[i] are slot i's own sockets (WithReusePort), one per
	// socket with a Bind address, in order; empty: the slot uses Sockets.
	SlotSockets    [][]int `json:",omitempty"`
	NotifyFd       int
	LivenessFds    [2]int // read and write ends
	Workers        []stateWorker
	Slots          []stateSlot
	Restarts       int
	Exits          exitCounts
	AnnouncedReady bool
	PendingRoll    bool

	Counters  *counters // nil from a program without them
	LastRoll  *LastRoll
	MetricsFd int // 0: none
	HealthFd  int `json:",omitempty"` // 0: none
	// Signals the old program had received and not handled yet; they go
	// beside the table (handover.State).
	Signals []syscall.Signal `json:"-"`
	// Recipes are the generations' pinned recipes: a generation keeps its
	// program across the upgrade, open on Fd, so that its restarts and the
	// way back of a later roll still run it.
	Recipes []stateRecipe
	// Handover is the hand-over router's state: the workers' pairs and the
	// connections in flight, open across the exec; nil: hand-over was off.
	Handover *connpass.RouterState `json:",omitempty"`
}

// stateRecipe is a generation's recipe; its environment is the new
// program's command's.
type stateRecipe struct {
	Generation uint64
	Path       string
	Args       []string
	Dir        string `json:",omitempty"`
	Fd         int    `json:",omitempty"` // the pinned program; 0: none, run Path
}

type stateSocket struct {
	Fd   int
	Name string
	// Bind is the address each slot binds for a socket of its own there
	// (WithReusePort); "": the socket is shared.
	Bind string `json:",omitempty"`
}

type stateWorker struct {
	Pid, Slot  int
	Generation uint64
	State      State
	Started    time.Time
	ReadyAt    time.Time
	Deadline   time.Time
	PingBy     time.Time
	ExpireAt   time.Time
	Hung       bool
	Restarts   int
	Status     string
	RetiredAt  time.Time
	Recycled   bool
	Hurried    bool `json:",omitempty"` // told to end its drain now (draining.go)
}

type stateSlot struct {
	Failures, Restarts int
	Vetoed             bool
	LastExit           *LastExit
}

// takeUpgradeState reads the state an upgrade handed this program; nil
// when there is none. One this program cannot read is an error, before
// anything of it is used.
func takeUpgradeState() (*upgradeState, error) {
	hs, err := handover.Receive()
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if hs == nil {
		return nil, nil
	}
	var st upgradeState
	if err := json.Unmarshal(hs.Table, &st); err != nil {
		return nil, fmt.Errorf("supervisor: upgrade state: %w", err)
	}
	st.Signals = hs.Signals
	if st.NotifyFd < 3 || st.LivenessFds[0] < 3 || st.LivenessFds[1] < 3 || st.Generation == 0 {
		return nil, fmt.Errorf("supervisor: upgrade state: notify fd %d, liveness fds %v, generation %d",
			st.NotifyFd, st.LivenessFds, st.Generation)
	}
	if st.MetricsFd != 0 && st.MetricsFd < 3 {
		return nil, fmt.Errorf("supervisor: upgrade state: metrics socket on fd %d", st.MetricsFd)
	}
	if st.HealthFd != 0 && st.HealthFd < 3 {
		return nil, fmt.Errorf("supervisor: upgrade state: health socket on fd %d", st.HealthFd)
	}
	for _, s := range st.Sockets {
		if s.Fd < 3 {
			return nil, fmt.Errorf("supervisor: upgrade state: socket %q on fd %d", s.Name, s.Fd)
		}
	}
	for i, fds := range st.SlotSockets {
		for _, fd := range fds {
			if fd < 3 {
				return nil, fmt.Errorf("supervisor: upgrade state: slot %d's socket on fd %d", i, fd)
			}
		}
	}
	for _, r := range st.Recipes {
		if r.Path == "" || r.Fd != 0 && r.Fd < 3 {
			return nil, fmt.Errorf("supervisor: upgrade state: generation %d's program %q on fd %d", r.Generation, r.Path, r.Fd)
		}
	}
	return &st, nil
}

// snapshot is the state to hand over: the workers still running, the
// sockets and the notify socket as fds that survive the exec.
func (t *table) snapshot() (*upgradeState, error) {
	st := &upgradeState{
		Generation:     t.gen,
		LastGeneration: t.lastGen,
		Restarts:       t.restarts,
		Exits:          t.exitsBy,
		AnnouncedReady: t.announcedReady,
		PendingRoll:    t.nextRoll != nil,
		Counters:       t.handOverCounters(),
		LastRoll:       t.lastRoll,
	}
	var err error
	if st.HealthFd, err = t.health.fd(); err != nil {
		return nil, err
	}
	if st.MetricsFd, err = t.metrics.fd(); err != nil {
		return nil, err
	}
	for j, sock := range t.socks {
		ss := stateSocket{Name: sock.Name()}
		if j < len(t.ports.bind) && t.ports.bind[j].Network != "" {
			ss.Bind = t.ports.bind[j].String()
		}
		if err := sock.Control(func(fd uintptr) { ss.Fd = int(fd) }); err != nil {
			return nil, err
		}
		st.Sockets = append(st.Sockets, ss)
	}
	if st.SlotSockets, err = t.slotSocketFds(); err != nil {
		return nil, err
	}
	if err := t.notify.Control(func(fd uintptr) { st.NotifyFd = int(fd) }); err != nil {
		return nil, err
	}
	if t.lastRollErr != nil {
		st.LastRollError = t.lastRollErr.Error()
	}
	live, err := rawFds([]*os.File{t.liveR, t.liveW})
	if err != nil {
		return nil, err
	}
	st.LivenessFds = [2]int{int(live[0]), int(live[1])}
	for _, g := range slices.Sorted(maps.Keys(t.recipes)) {
		rc := t.recipes[g]
		sr := stateRecipe{Generation: g, Path: rc.cmd.Path, Args: rc.cmd.Args, Dir: rc.cmd.Dir}
		if rc.exe != nil {
			fd, err := rawFds([]*os.File{rc.exe})
			if err != nil {
				return nil, err
			}
			sr.Fd = int(fd[0])
		}
		st.Recipes = append(st.Recipes, sr)
	}
	if st.Handover, err = t.handoverSnapshot(); err != nil {
		return nil, err
	}
	for _, sl := range t.slots {
		st.Slots = append(st.Slots, stateSlot{Failures: sl.failures, Restarts: sl.restarts, Vetoed: sl.vetoed, LastExit: sl.lastExit})
	}
	for w := range t.live {
		select {
		case <-w.proc.Done():
			continue // it exited; the new program fills its slot
		default:
		}
		st.Workers = append(st.Workers, stateWorker{
			Pid: w.info.Pid, Slot: w.info.Slot, Generation: w.info.Generation, State: w.info.State,
			Started: w.info.Started, ReadyAt: w.readyAt, Deadline: w.deadline, Restarts: w.info.Restarts,
			PingBy: w.pingBy, ExpireAt: w.expireAt, Hung: w.hung, Status: w.status,
			RetiredAt: w.retiredAt, Recycled: w.recycled, Hurried: w.hurried,
		})
	}
	return st, nil
}

// resume takes over the table an upgrade handed over: sockets, notify
// socket and workers, which are adopted as this program's children.
func (t *table) resume(st *upgradeState) (err error) {
	for _, s := range st.Sockets {
		sock, err := listener.AdoptFd(s.Fd, s.Name)
		if err != nil {
			return fmt.Errorf("supervisor: inherited socket: %w", err)
		}
		t.owned = append(t.owned, sock)
	}
	t.socks = t.owned
	if n := len(t.s.addrs) + len(t.o.sockets); n > 0 && n != len(t.socks) {
		t.log.Warn("the inherited sockets are kept; the configured ones are ignored",
			zap.Int("inherited", len(t.socks)), zap.Int("configured", n))
	}
	if err := t.resumeSlotSockets(st); err != nil {
		return err
	}
	if t.notify, err = notifySocketFromFd(st.NotifyFd); err != nil {
		return fmt.Errorf("supervisor: inherited notify socket: %w", err)
	}
	t.liveR = os.NewFile(uintptr(st.LivenessFds[0]), "liveness")
	t.liveW = os.NewFile(uintptr(st.LivenessFds[1]), "liveness")
	for _, f := range []*os.File{t.liveR, t.liveW} {
		if err := cloexec.Set(f); err != nil {
			return fmt.Errorf("supervisor: inherited liveness pipe: %w", err)
		}
	}
	for _, sr := range st.Recipes {
		rc := recipe{cmd: Command{Path: sr.Path, Args: sr.Args, Dir: sr.Dir, Env: t.s.cmd.Env}}
		if sr.Fd != 0 {
			rc.exe = os.NewFile(uintptr(sr.Fd), sr.Path)
			rc.self = isSelf(rc.exe)
		}
		t.setRecipe(sr.Generation, rc) // closed with the table, even if resume fails
		if rc.exe != nil {
			if err := cloexec.Set(rc.exe); err != nil {
				return fmt.Errorf("supervisor: inherited program of generation %d: %w", sr.Generation, err)
			}
		}
	}
	t.gen, t.restarts, t.exitsBy, t.announcedReady = st.Generation, st.Restarts, st.Exits, st.AnnouncedReady
	t.count.inherit(st.Counters)
	t.lastRoll = st.LastRoll
	t.countUpgrade(true)
	t.lastGen = max(st.LastGeneration, st.Generation)
	if st.LastRollError != "" {
		t.lastRollErr = errors.New(st.LastRollError)
	}
	// The old program's slots, not the configured count: a Scale since
	// start is the newer wish.
	t.slots = make([]*slot, max(len(st.Slots), 1))
	for i := range t.slots {
		t.slots[i] = &slot{index: i}
		if i < len(st.Slots) {
			t.slots[i].failures, t.slots[i].restarts, t.slots[i].vetoed = st.Slots[i].Failures, st.Slots[i].Restarts, st.Slots[i].Vetoed
			t.slots[i].lastExit = st.Slots[i].LastExit
		}
	}
	t.handoverRestore(st.Handover) // before a worker placed nowhere retires
	adopted := 0
	// Ready workers first: a slot being recycled hands over its serving
	// worker and the replacement starting beside it, in any order.
	slices.SortStableFunc(st.Workers, func(a, b stateWorker) int { return cmp.Compare(stateRank(a.State), stateRank(b.State)) })
	for _, sw := range st.Workers {
		proc, err := t.reaper.Adopt(sw.Pid)
		if err != nil {
			t.log.Warn("worker gone during the upgrade", zap.Int("pid", sw.Pid), zap.Error(err))
			continue
		}
		w := &child{
			info: WorkerInfo{Slot: sw.Slot, Pid: sw.Pid, Generation: sw.Generation, State: sw.State,
				Started: sw.Started, Restarts: sw.Restarts},
			proc: proc, readyAt: sw.ReadyAt, deadline: sw.Deadline,
			pingBy: sw.PingBy, expireAt: sw.ExpireAt, hung: sw.Hung, status: sw.Status,
			retiredAt: sw.RetiredAt, recycled: sw.Recycled, hurried: sw.Hurried,
		}
		t.track(w)
		adopted++
		var sl *slot
		if w.info.Slot < len(t.slots) {
			sl = t.slots[w.info.Slot]
		}
		switch {
		case w.info.State == Stopping:
		case sl != nil && sl.w == nil:
			sl.w = w
		case sl != nil && sl.next == nil && sl.w.info.State == Ready && w.info.State == Starting:
			sl.next = w
		default:
			t.retire(w, "no slot for it after the upgrade")
		}
	}
	t.handoverForget(st.Handover)
	t.closeSlots(len(t.slots)) // none, unless the state was inconsistent
	if st.PendingRoll {
		t.nextRoll = &roll{}
	}
	t.carried = st.Signals
	t.log.Info("supervisor upgraded in place", zap.Int("pid", os.Getpid()), zap.Int("workers", adopted),
		zap.Uint64("generation", t.gen))
	return nil
}

// handOverCounters returns the counters to hand on, with this program's
// notify drops added to the earlier programs'.
func (t *table) handOverCounters() *counters {
	c := t.totals()
	return &c
}

// stateRank orders handed-over workers for placement: ready, starting,
// stopping.
func stateRank(s State) int {
	switch s {
	case Ready:
		return 0
	case Starting:
		return 1
	}
	return 2
}

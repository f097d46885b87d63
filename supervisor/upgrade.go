package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
)

// The variables of an in-place upgrade. The old program runs the new binary
// once with HANDOFF_PREFLIGHT=1 and expects preflightOK on its stdout and
// status 0; then it execs it with the worker table in HANDOFF_UPGRADE_STATE.
const (
	envPreflight    = "HANDOFF_PREFLIGHT"
	envUpgradeState = "HANDOFF_UPGRADE_STATE"
	preflightOK     = "handoff-preflight-ok"

	preflightTimeout = 10 * time.Second
)

// earlySignals catches the supervisor's signals from the first moment of a
// program that an upgrade exec'd until its Run takes them over. Signals are
// process-wide, so this is the one piece of package state.
var early struct {
	sync.Mutex
	sigs chan os.Signal
}

func init() {
	if os.Getenv(envPreflight) == "1" {
		fmt.Println(preflightOK)
		os.Exit(0)
	}
	if _, ok := os.LookupEnv(envUpgradeState); ok {
		early.sigs = make(chan os.Signal, 2048)
		signal.Notify(early.sigs, handledSignals...)
	}
}

// Resuming reports whether this process is the new program of an in-place
// upgrade whose state its supervisor has not taken over yet: the sockets
// and workers will come from the old program (so, for instance, a program
// adopted from systemd is not there to adopt again). Ask before Run.
func Resuming() bool {
	_, ok := os.LookupEnv(envUpgradeState)
	return ok
}

// takeEarlySignals returns the channel init registered, or a new one.
func takeEarlySignals() chan os.Signal {
	early.Lock()
	defer early.Unlock()
	c := early.sigs
	early.sigs = nil
	if c == nil {
		c = make(chan os.Signal, 2048)
	}
	return c
}

// upgradeState is the worker table as one program hands it to the next.
type upgradeState struct {
	Generation     uint64
	Sockets        []stateSocket
	NotifyFd       int
	LivenessFds    [2]int // read and write ends
	Workers        []stateWorker
	Slots          []stateSlot
	Restarts       int
	Exits          ExitCounts
	AnnouncedReady bool
	PendingRoll    bool
}

type stateSocket struct {
	Fd   int
	Name string
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
}

type stateSlot struct {
	Failures, Restarts int
	Vetoed             bool
}

// takeUpgradeState reads and removes the state an upgrade left in the
// environment; nil when there is none.
func takeUpgradeState() (*upgradeState, error) {
	v, ok := os.LookupEnv(envUpgradeState)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(envUpgradeState)
	var st upgradeState
	if err := json.Unmarshal([]byte(v), &st); err != nil {
		return nil, fmt.Errorf("supervisor: %s: %w", envUpgradeState, err)
	}
	if st.NotifyFd < 3 || st.LivenessFds[0] < 3 || st.LivenessFds[1] < 3 || st.Generation == 0 {
		return nil, fmt.Errorf("supervisor: %s: notify fd %d, liveness fds %v, generation %d",
			envUpgradeState, st.NotifyFd, st.LivenessFds, st.Generation)
	}
	for _, s := range st.Sockets {
		if s.Fd < 3 {
			return nil, fmt.Errorf("supervisor: %s: socket %q on fd %d", envUpgradeState, s.Name, s.Fd)
		}
	}
	return &st, nil
}

// snapshot is the state to hand over: the workers still running, the
// sockets and the notify socket as fds that survive the exec.
func (t *table) snapshot() (*upgradeState, error) {
	st := &upgradeState{
		Generation:     t.gen,
		Restarts:       t.restarts,
		Exits:          t.exitsBy,
		AnnouncedReady: t.announcedReady,
		PendingRoll:    t.nextRoll != nil,
	}
	for _, sock := range t.socks {
		if err := sock.Control(func(fd uintptr) {
			st.Sockets = append(st.Sockets, stateSocket{Fd: int(fd), Name: sock.Name()})
		}); err != nil {
			return nil, err
		}
	}
	if err := t.notify.Control(func(fd uintptr) { st.NotifyFd = int(fd) }); err != nil {
		return nil, err
	}
	live, err := rawFds([]*os.File{t.liveR, t.liveW})
	if err != nil {
		return nil, err
	}
	st.LivenessFds = [2]int{int(live[0]), int(live[1])}
	for _, sl := range t.slots {
		st.Slots = append(st.Slots, stateSlot{Failures: sl.failures, Restarts: sl.restarts, Vetoed: sl.vetoed})
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
	if t.notify, err = notifySocketFromFd(st.NotifyFd); err != nil {
		return fmt.Errorf("supervisor: inherited notify socket: %w", err)
	}
	t.liveR = os.NewFile(uintptr(st.LivenessFds[0]), "liveness")
	t.liveW = os.NewFile(uintptr(st.LivenessFds[1]), "liveness")
	for _, f := range []*os.File{t.liveR, t.liveW} {
		if err := setCloexec(f); err != nil {
			return fmt.Errorf("supervisor: inherited liveness pipe: %w", err)
		}
	}
	t.gen, t.restarts, t.exitsBy, t.announcedReady = st.Generation, st.Restarts, st.Exits, st.AnnouncedReady
	// The old program's slots, not the configured count: a Scale since
	// start is the newer wish.
	t.slots = make([]*slot, max(len(st.Slots), 1))
	for i := range t.slots {
		t.slots[i] = &slot{index: i}
		if i < len(st.Slots) {
			t.slots[i].failures, t.slots[i].restarts, t.slots[i].vetoed = st.Slots[i].Failures, st.Slots[i].Restarts, st.Slots[i].Vetoed
		}
	}
	adopted := 0
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
		}
		t.track(w)
		adopted++
		switch {
		case w.info.State == Stopping:
		case w.info.Slot < len(t.slots) && t.slots[w.info.Slot].w == nil:
			t.slots[w.info.Slot].w = w
		default:
			t.retire(w, "no slot for it after the upgrade")
		}
	}
	if st.PendingRoll {
		t.nextRoll = &roll{}
	}
	t.log.Info("supervisor upgraded in place", zap.Int("pid", os.Getpid()), zap.Int("workers", adopted),
		zap.Uint64("generation", t.gen))
	return nil
}

type preflightResult struct {
	out []byte
	st  string
	err error
}

// requestUpgrade starts an upgrade, after the roll in progress if any.
func (t *table) requestUpgrade(done chan<- error) {
	if t.stopping {
		reply(done, ErrClosed)
		return
	}
	if t.upgrade != nil {
		t.upgrade.waiters = appendWaiter(t.upgrade.waiters, done)
		return
	}
	path := t.o.upgradePath
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			reply(done, fmt.Errorf("supervisor: upgrade: %w", err))
			return
		}
		path = exe
	}
	t.upgrade = &upgrade{path: path, waiters: appendWaiter(nil, done)}
	if t.roll != nil {
		t.log.Info("upgrade queued behind the roll in progress")
		return
	}
	t.startPreflight()
}

// startPreflight runs the new binary in check mode, in the background; the
// loop gets the result on t.preflights.
func (t *table) startPreflight() {
	u := t.upgrade
	t.log.Info("upgrade: checking the new binary", zap.String("path", u.path))
	r, w, err := os.Pipe()
	if err != nil {
		t.failUpgrade(err)
		return
	}
	env := []string{envPreflight + "=1"}
	for _, kv := range os.Environ() {
		if !ownedVar(kv) {
			env = append(env, kv)
		}
	}
	fds, err := rawFds([]*os.File{t.devnull, w, os.Stderr})
	if err == nil {
		p, perr := t.reaper.Start(u.path, []string{u.path}, &syscall.ProcAttr{Env: env, Files: fds})
		err = perr
		if perr == nil {
			t.bg.Add(1)
			go func() {
				defer t.bg.Done()
				defer r.Close()
				res := preflightResult{}
				read := make(chan struct{})
				go func() {
					defer close(read)
					res.out, _ = io.ReadAll(io.LimitReader(r, 4096))
				}()
				timeout := time.NewTimer(preflightTimeout)
				defer timeout.Stop()
				select {
				case <-read:
				case <-timeout.C:
					res.err = fmt.Errorf("no answer within %v", preflightTimeout)
				case <-t.quit:
				}
				p.Signal(syscall.SIGKILL) // nothing if it exited
				r.SetReadDeadline(time.Now())
				<-read
				st, werr := p.Wait(context.Background())
				res.st = st.String()
				if res.err == nil && werr != nil {
					res.err = werr
				} else if res.err == nil && !st.Success() {
					res.err = fmt.Errorf("preflight run: %s", st)
				}
				select {
				case t.preflights <- res:
				case <-t.quit:
				}
			}()
		}
	}
	w.Close()
	if err != nil {
		r.Close()
		t.failUpgrade(err)
	}
}

func (t *table) onPreflight(res preflightResult) {
	u := t.upgrade
	if u == nil || t.stopping {
		return
	}
	if res.err == nil && strings.TrimSpace(string(res.out)) != preflightOK {
		res.err = fmt.Errorf("not a handoff program: its preflight run printed %q", truncate(string(res.out), 80))
	}
	if res.err != nil {
		t.failUpgrade(fmt.Errorf("the new binary %s failed its preflight run: %w", u.path, res.err))
		return
	}
	t.log.Info("upgrade: exec", zap.String("path", u.path), zap.Int("pid", os.Getpid()))
	t.failUpgrade(t.exec(u.path)) // exec returns only on failure
}

func (t *table) failUpgrade(err error) {
	u := t.upgrade
	if u == nil {
		return
	}
	t.upgrade = nil
	t.log.Error("upgrade failed; the supervisor keeps running", zap.Error(err))
	replyAll(u.waiters, fmt.Errorf("supervisor: upgrade: %w", err))
	t.afterOperation()
}

// exec replaces the program in place with path, handing over the table.
// It returns only if that failed, with everything as it was.
func (t *table) exec(path string) error {
	// From here exits stay unreaped, zombies that keep their pids, for the
	// new program to adopt.
	t.reaper.Close()
	close(t.reaperGone)
	restore := func() error {
		t.reaperGone = make(chan struct{})
		r, err := t.newReaper()
		if err != nil {
			return err
		}
		t.reaper = r
		// track re-inserts into t.live: range over a copy.
		for _, w := range slices.Collect(maps.Keys(t.live)) {
			select {
			case <-w.proc.Done():
				continue // its watcher delivers the exit
			default:
			}
			proc, err := t.reaper.Adopt(w.info.Pid)
			if err != nil {
				t.log.Error("re-adopting a worker after a failed upgrade", zap.Int("pid", w.info.Pid), zap.Error(err))
				continue
			}
			w.proc = proc
			delete(t.live, w)
			t.track(w)
		}
		return nil
	}
	st, err := t.snapshot()
	if err != nil {
		return errors.Join(err, restore())
	}
	state, err := json.Marshal(st)
	if err != nil {
		return errors.Join(err, restore())
	}
	env := []string{envUpgradeState + "=" + string(state)}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, envUpgradeState+"=") {
			env = append(env, kv)
		}
	}
	fds := []int{st.NotifyFd, st.LivenessFds[0], st.LivenessFds[1]}
	for _, s := range st.Sockets {
		fds = append(fds, s.Fd)
	}
	err = execInPlace(path, env, fds, t.sigs != nil)
	if t.sigs != nil {
		signal.Notify(t.sigs, handledSignals...)
	}
	return errors.Join(err, restore())
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

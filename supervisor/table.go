package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/launch"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/worker"
)

// table is the worker table. Only the run goroutine touches it.
type table struct {
	s   *Supervisor
	o   *options
	log *zap.Logger

	reaper     *reap.Reaper
	reaperGone chan struct{} // closed when reaper is closed early (upgrade)

	socks   []*listener.Socket // passed to workers, in fd order
	owned   []*listener.Socket // the part of socks that Run closes
	devnull *os.File
	// liveness is a pipe whose read end every worker holds; only this
	// process holds the write end, so workers read EOF once it is gone.
	liveR, liveW *os.File
	notify       *notifySocket
	notes        chan notifyMsg
	sigs         chan os.Signal // nil without WithSignals

	gen   uint64 // generation of new workers outside a roll
	slots []*slot
	live  map[*child]struct{} // every started process not yet reaped
	byPid map[int]*child

	exits      chan exit
	preflights chan preflightResult
	quit       chan struct{} // closed when the loop has ended
	watchers   sync.WaitGroup
	bg         sync.WaitGroup // notify reader, preflight

	roll     *roll // the roll in progress
	nextRoll *roll // requests that came during it, coalesced
	upgrade  *upgrade

	stopping       bool
	stopSignals    int // SIGTERM/SIGINT received
	announcedReady bool
	wake           *time.Timer

	fatal       error // Run gives up with this (WithMaxStartFailures)
	lastRollErr error
	restarts    int
	exitsBy     ExitCounts
	foreign     int // notify messages from processes that are not workers
	hung        int // workers the watchdog signalled
	recycled    int // workers replaced at their maximum lifetime
}

// slot is one of the N places a worker runs in.
type slot struct {
	index     int
	w         *child // the worker serving here; nil while empty
	next      *child // its replacement during a roll, until ready
	failures  int    // consecutive start failures
	notBefore time.Time
	restarts  int
	vetoed    bool // OnExit refused the restart
}

type child struct {
	info     WorkerInfo
	proc     *reap.Process
	readyAt  time.Time // zero until ready
	deadline time.Time // Starting: ready (delay) or timeout; Stopping or hung: SIGKILL
	pingBy   time.Time // the watchdog's next ping is due by then; zero: off
	expireAt time.Time // recycle then (WithMaxLifetime); zero: never
	hung     bool      // the watchdog signalled it
	status   string    // the last STATUS= it sent
}

type exit struct {
	w  *child
	st reap.Status
}

type roll struct {
	gen     uint64
	started time.Time
	waiters []chan<- error
}

type upgrade struct {
	path    string
	waiters []chan<- error
}

func (s *Supervisor) newTable() (_ *table, err error) {
	t := &table{
		s:          s,
		o:          &s.o,
		log:        s.log,
		gen:        1,
		live:       make(map[*child]struct{}),
		byPid:      make(map[int]*child),
		exits:      make(chan exit),
		notes:      make(chan notifyMsg),
		preflights: make(chan preflightResult),
		quit:       make(chan struct{}),
		reaperGone: make(chan struct{}),
		wake:       time.NewTimer(time.Hour),
	}
	t.wake.Stop()
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	if s.o.signals {
		t.sigs = takeEarlySignals()
		signal.Notify(t.sigs, handledSignals...)
	}
	if t.devnull, err = os.Open(os.DevNull); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if t.reaper, err = t.newReaper(); err != nil {
		return nil, err
	}
	st, err := takeUpgradeState()
	if err != nil {
		t.log.Error("ignoring the upgrade state", zap.Error(err))
	}
	if st != nil {
		if err := t.resume(st); err != nil {
			return nil, err
		}
	} else if err := t.open(); err != nil {
		return nil, err
	}
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		err := t.notify.serve(func(m notifyMsg) {
			select {
			case t.notes <- m:
			case <-t.quit:
			}
		})
		if err != nil {
			t.log.Error("notify socket", zap.Error(err))
		}
	}()
	return t, nil
}

// open binds the configured addresses and the notify socket.
func (t *table) open() (err error) {
	for _, a := range t.s.addrs {
		sock, err := listener.Listen(a)
		if err != nil {
			return fmt.Errorf("supervisor: %w", err)
		}
		t.owned = append(t.owned, sock)
		t.log.Info("listening", zap.String("name", sock.Name()), zap.Stringer("addr", sock.Addr()))
	}
	t.socks = append(slices.Clone(t.owned), t.o.sockets...)
	if t.notify, err = openNotifySocket(); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	if t.liveR, t.liveW, err = os.Pipe(); err != nil {
		return fmt.Errorf("supervisor: liveness pipe: %w", err)
	}
	t.slots = make([]*slot, t.o.workers)
	for i := range t.slots {
		t.slots[i] = &slot{index: i}
	}
	return nil
}

func (t *table) newReaper() (*reap.Reaper, error) {
	opts := []reap.Option{reap.WithLogger(t.log)}
	if t.o.subreaper {
		opts = append(opts, reap.WithSubreaper(), reap.WithOrphanFunc(func(st reap.Status) {
			t.log.Debug("reaped orphan", zap.Int("pid", st.Pid), zap.Stringer("status", st))
		}))
	}
	r, err := reap.New(opts...)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	return r, nil
}

// close releases what newTable opened. The loop has returned, so every
// worker has been reaped and every watcher has delivered its exit.
func (t *table) close() {
	select {
	case <-t.quit:
	default:
		close(t.quit)
	}
	if t.notify != nil {
		t.notify.Close()
	}
	t.bg.Wait()
	t.watchers.Wait()
	t.wake.Stop()
	if t.sigs != nil {
		signal.Stop(t.sigs)
	}
	if t.reaper != nil {
		t.reaper.Close()
	}
	for _, f := range []*os.File{t.devnull, t.liveR, t.liveW} {
		if f != nil {
			f.Close()
		}
	}
	for _, sock := range t.owned {
		sock.Close()
	}
}

// loop is the run goroutine: it owns the table until every worker is gone.
func (t *table) loop(ctx context.Context) error {
	s := t.s
	done, stopC, killC := ctx.Done(), s.stopC, s.killC

	t.log.Info("starting workers", zap.Int("workers", len(t.slots)), zap.String("command", s.cmd.Path),
		zap.Stringer("readiness", t.o.readiness), zap.String("notify_socket", t.notify.Name()))
	t.schedule()
	t.afterOperation() // a roll requested before an upgrade
	for !t.stopping || len(t.live) > 0 {
		t.rearm()
		select {
		case e := <-t.exits:
			t.onExit(e)
		case m := <-t.notes:
			t.onNotify(m)
		case r := <-t.preflights:
			t.onPreflight(r)
		case sig := <-t.sigs:
			t.onSignal(sig)
		case f := <-s.reqs:
			f(t)
		case <-t.wake.C:
			t.onTimer()
		case <-done:
			done = nil
			t.log.Info("context done: stopping", zap.Duration("timeout", t.o.stopTimeout))
			t.stop(t.o.stopTimeout)
		case <-stopC:
			stopC = nil
			t.log.Info("stopping")
			t.stop(0)
		case <-killC:
			killC = nil
			t.killAll()
		}
	}
	t.log.Info("stopped", zap.Int("restarts", t.restarts))
	return t.fatal
}

// rearm sets the wake timer to the earliest deadline in the table.
func (t *table) rearm() {
	var next time.Time
	earliest := func(d time.Time) {
		if !d.IsZero() && (next.IsZero() || d.Before(next)) {
			next = d
		}
	}
	for w := range t.live {
		earliest(w.deadline)
		earliest(w.pingBy)
		earliest(w.expireAt)
	}
	if !t.stopping {
		for _, sl := range t.slots {
			if sl.w == nil && !sl.vetoed {
				earliest(sl.notBefore)
			}
		}
	}
	t.wake.Stop()
	if !next.IsZero() {
		t.wake.Reset(time.Until(next))
	}
}

// onTimer acts on every deadline that has passed.
func (t *table) onTimer() {
	now := time.Now()
	for w := range t.live {
		if !w.pingBy.IsZero() && !now.Before(w.pingBy) {
			t.watchdogFire(w, "missed its watchdog ping")
		}
		if !w.expireAt.IsZero() && !now.Before(w.expireAt) {
			w.expireAt = time.Time{}
			t.recycle(w)
		}
		if w.deadline.IsZero() || now.Before(w.deadline) {
			continue
		}
		w.deadline = time.Time{}
		switch {
		case w.info.State == Stopping || w.hung:
			t.log.Warn("worker did not exit in time: killing", workerFields(w.info)...)
			t.signal(w, syscall.SIGKILL)
		case t.o.readiness.mode != readyNotify:
			t.ready(w) // start and delay readiness
		default:
			t.log.Error("worker not ready in time: killing", append(workerFields(w.info),
				zap.Duration("ready_timeout", t.o.readyTimeout))...)
			if sl := t.slotOf(w); sl != nil && sl.next == w {
				t.failNext(sl, fmt.Errorf("new worker %d (slot %d) not ready within %v", w.info.Pid, sl.index, t.o.readyTimeout))
				continue
			}
			t.signal(w, syscall.SIGKILL) // its exit counts as a start failure
		}
	}
	t.schedule()
}

// schedule starts a worker in every empty slot whose backoff has passed.
func (t *table) schedule() {
	if t.stopping {
		return
	}
	now := time.Now()
	for _, sl := range t.slots {
		if sl.w == nil && !sl.vetoed && !now.Before(sl.notBefore) {
			if w, err := t.spawn(sl, t.targetGen()); err != nil {
				t.startFailed(sl, err)
			} else {
				sl.w = w
			}
		}
	}
}

// targetGen is the generation new workers belong to.
func (t *table) targetGen() uint64 {
	if t.roll != nil {
		return t.roll.gen
	}
	return t.gen
}

// spawn starts a worker for sl in generation gen.
func (t *table) spawn(sl *slot, gen uint64) (*child, error) {
	s := t.s
	sp := &Spawn{
		Path:       s.cmd.Path,
		Args:       slices.Clone(s.cmd.Args),
		Dir:        s.cmd.Dir,
		Env:        s.workerEnv(t.socks, t.notify.Name(), sl.index, gen),
		Stdin:      t.devnull,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Worker:     sl.index,
		Generation: gen,
	}
	if h := t.o.hooks.BeforeSpawn; h != nil {
		if err := h(sp); err != nil {
			return nil, fmt.Errorf("before-spawn hook: %w", err)
		}
	}
	proc, err := t.start(sp)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	w := &child{
		info: WorkerInfo{
			Slot:       sl.index,
			Pid:        proc.Pid(),
			Generation: gen,
			State:      Starting,
			Started:    now,
			Restarts:   sl.restarts,
		},
		proc: proc,
	}
	if t.o.watchdog > 0 {
		w.pingBy = now.Add(t.o.watchdog)
	}
	if t.o.maxLifetime > 0 {
		w.expireAt = now.Add(t.o.maxLifetime)
		if t.o.lifetimeJitter > 0 {
			w.expireAt = w.expireAt.Add(rand.N(t.o.lifetimeJitter))
		}
	}
	t.track(w)
	t.log.Info("worker started", workerFields(w.info)...)
	if h := t.o.hooks.AfterSpawn; h != nil {
		h(w.info)
	}
	switch t.o.readiness.mode {
	case readyStart:
		// Ready now; the ready event fires once the caller has placed w.
		w.readyAt, w.deadline = now, now
	case readyDelay:
		w.deadline = now.Add(t.o.readiness.delay)
	case readyNotify:
		w.deadline = now.Add(t.o.readyTimeout)
	}
	return w, nil
}

// track registers a started or adopted worker and watches for its exit.
func (t *table) track(w *child) {
	t.live[w] = struct{}{}
	t.byPid[w.info.Pid] = w
	proc, gone := w.proc, t.reaperGone
	t.watchers.Add(1)
	go func() {
		defer t.watchers.Done()
		select {
		case <-proc.Done():
		case <-gone: // the reaper was closed for an upgrade
			select {
			case <-proc.Done(): // but this exit was collected first
			default:
				return
			}
		}
		st, ok := proc.Status()
		if !ok { // reaped by someone else: the status is lost, not the exit
			st = reap.Status{Pid: proc.Pid(), Code: -1, Time: time.Now()}
		}
		select {
		case t.exits <- exit{w, st}:
		case <-t.quit:
		}
	}()
}

// start starts the process described by sp. Every file is handed over as a
// raw descriptor: fds 0-2, the sockets from fd 3, then the extra files.
func (t *table) start(sp *Spawn) (proc *reap.Process, err error) {
	// The trampoline would only exit 127; say what is wrong instead.
	if _, err := exec.LookPath(sp.Path); err != nil {
		return nil, err
	}
	std, err := rawFds([]*os.File{sp.Stdin, sp.Stdout, sp.Stderr})
	if err != nil {
		return nil, err
	}
	extra, err := rawFds(sp.ExtraFiles)
	if err != nil {
		return nil, err
	}
	live, err := rawFds([]*os.File{t.liveR})
	if err != nil {
		return nil, err
	}
	env := append(slices.Clip(sp.Env), fmt.Sprintf("%s=%d", worker.EnvLivenessFd, len(std)+len(t.socks)+len(extra)))
	path, argv, env := launch.Trampoline(sp.Path, sp.Args, env)
	cerr := launch.ControlAll(t.socks, func(socks []uintptr) {
		proc, err = t.reaper.Start(path, argv, &syscall.ProcAttr{
			Dir:   sp.Dir,
			Env:   env,
			Files: slices.Concat(std, socks, extra, live),
			Sys:   sysProcAttr(),
		})
	})
	runtime.KeepAlive(sp) // its files stay open until the child has its copies
	if err = cmp.Or(cerr, err); err != nil {
		return nil, fmt.Errorf("start %s: %w", sp.Path, err)
	}
	return proc, nil
}

// rawFds returns the files' descriptors without switching them to blocking
// mode, as File.Fd would.
func rawFds(files []*os.File) ([]uintptr, error) {
	fds := make([]uintptr, len(files))
	for i, f := range files {
		if f == nil {
			return nil, fmt.Errorf("file %d is nil", i)
		}
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Name(), err)
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = fd }); err != nil {
			return nil, fmt.Errorf("file %s: %w", f.Name(), err)
		}
	}
	return fds, nil
}

func (t *table) startFailed(sl *slot, err error) {
	t.failed(sl, err)
	d := t.backoff(sl.failures)
	sl.notBefore = time.Now().Add(d)
	t.failureLog(sl)("worker start failed", zap.Int("worker", sl.index), zap.Error(err),
		zap.Int("failures", sl.failures), zap.Duration("retry_in", d))
}

// failed counts a start failure of sl, and gives up when there have been
// too many in a row (WithMaxStartFailures).
func (t *table) failed(sl *slot, err error) {
	sl.failures++
	t.exitsBy.StartFailures++
	if n := t.o.maxFailures; n > 0 && sl.failures >= n && t.fatal == nil {
		t.fatal = fmt.Errorf("supervisor: worker %d failed to start %d times in a row, giving up: %w", sl.index, sl.failures, err)
		t.log.Error("too many start failures: stopping", zap.Error(t.fatal))
		t.stop(t.o.stopTimeout)
	}
}

// failureLog returns the logger for sl's failures: the first three of a
// run, then only the 4th, 8th, 16th…, so a crash loop does not flood the
// log; the others go to debug.
func (t *table) failureLog(sl *slot) func(string, ...zap.Field) {
	if n := sl.failures; n <= 3 || n&(n-1) == 0 {
		return t.log.Warn
	}
	return t.log.Debug
}

// backoff is the delay after n consecutive start failures.
func (t *table) backoff(n int) time.Duration {
	d := t.o.backoffMin
	for i := 1; i < n && d < t.o.backoffMax; i++ {
		d *= 2
	}
	return min(d, t.o.backoffMax)
}

// ready marks w as serving. A roll's new worker takes over its slot, and
// the old one retires.
func (t *table) ready(w *child) {
	if w.info.State != Starting {
		return
	}
	w.info.State = Ready
	if w.readyAt.IsZero() {
		w.readyAt = time.Now()
	}
	w.deadline = time.Time{}
	t.log.Info("worker ready", append(workerFields(w.info),
		zap.Duration("after", w.readyAt.Sub(w.info.Started)))...)
	if h := t.o.hooks.OnReady; h != nil {
		h(w.info)
	}
	if sl := t.slotOf(w); sl != nil && sl.next == w {
		old := sl.w
		sl.w, sl.next = w, nil
		if old != nil {
			t.retire(old, "replaced by a new generation")
		}
	}
	// Also for a worker a roll placed straight into an empty slot (scaled
	// up, or refilled after a crash): it may be the last the roll waits for.
	t.advanceRoll()
	t.announceReady()
}

// announceReady tells systemd, once, that the first generation serves.
func (t *table) announceReady() {
	if t.announcedReady || t.stopping {
		return
	}
	for _, sl := range t.slots {
		if !sl.vetoed && (sl.w == nil || sl.w.info.State != Ready) {
			return
		}
	}
	t.announcedReady = true
	t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=%d workers ready, generation %d", len(t.slots), t.gen))
}

// slotOf returns the slot w runs in, or nil if w is retiring or its slot
// was removed.
func (t *table) slotOf(w *child) *slot {
	if i := w.info.Slot; i < len(t.slots) {
		if sl := t.slots[i]; sl.w == w || sl.next == w {
			return sl
		}
	}
	return nil
}

// retire asks w to drain and exit, and kills it at the stop timeout.
func (t *table) retire(w *child, why string) {
	if w.info.State == Stopping {
		return
	}
	w.info.State = Stopping
	w.deadline = time.Now().Add(t.o.stopTimeout)
	t.log.Info("retiring worker", append(workerFields(w.info), zap.String("why", why))...)
	t.signal(w, t.o.stopSignal)
}

func (t *table) onExit(e exit) {
	w, st := e.w, e.st
	delete(t.live, w)
	if t.byPid[w.info.Pid] == w {
		delete(t.byPid, w.info.Pid)
	}
	switch {
	case st.Signal != 0:
		t.exitsBy.Signaled++
	case st.Code == 0:
		t.exitsBy.Clean++
	default:
		t.exitsBy.Failed++
	}
	fields := append(workerFields(w.info), zap.Stringer("status", st))
	asked := t.stopping || w.info.State == Stopping
	sl := t.slotOf(w)
	switch {
	case sl == nil || asked:
		if sl != nil && sl.w == w {
			sl.w = nil
		}
		if sl != nil && sl.next == w {
			sl.next = nil
		}
		t.log.Info("worker exited", fields...)
		t.schedule()
		return
	case sl.next == w:
		t.log.Error("new worker exited before it was ready", fields...)
		t.failNext(sl, fmt.Errorf("new worker %d (slot %d) exited before it was ready: %s", w.info.Pid, sl.index, st))
		return
	}
	sl.w = nil
	up := !w.readyAt.IsZero() && st.Time.Sub(w.readyAt) >= t.o.minUptime
	if up {
		sl.failures = 0
	} else {
		t.failed(sl, fmt.Errorf("worker %d exited after %v: %s", w.info.Pid, st.Time.Sub(w.info.Started).Round(time.Millisecond), st))
	}
	restart := true
	if h := t.o.hooks.OnExit; h != nil {
		restart = h(w.info, st)
	}
	if !restart {
		sl.vetoed = true
		t.log.Warn("worker exited; restart vetoed by hook", fields...)
		t.advanceRoll()
		return
	}
	var delay time.Duration
	if !up {
		delay = t.backoff(sl.failures)
	}
	sl.notBefore = time.Now().Add(delay)
	sl.restarts++
	t.restarts++
	t.failureLog(sl)("worker died; restarting", append(fields,
		zap.Bool("start_failure", !up), zap.Int("failures", sl.failures), zap.Duration("delay", delay))...)
	t.schedule()
}

// requestRoll starts a roll, or queues the request behind the running roll
// or upgrade; queued requests share one roll.
func (t *table) requestRoll(done chan<- error) {
	if t.stopping {
		reply(done, ErrClosed)
		return
	}
	if t.roll != nil || t.upgrade != nil {
		if t.nextRoll == nil {
			t.nextRoll = &roll{}
			t.log.Info("roll queued")
		}
		t.nextRoll.waiters = appendWaiter(t.nextRoll.waiters, done)
		return
	}
	t.startRoll(&roll{waiters: appendWaiter(nil, done)})
}

func (t *table) startRoll(r *roll) {
	r.gen, r.started = t.gen+1, time.Now()
	t.roll = r
	t.log.Info("rolling", zap.Uint64("generation", r.gen), zap.Int("workers", len(t.slots)), zap.Int("surge", t.o.surge))
	t.sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=rolling to generation %d", monotonicUsec(), r.gen))
	t.advanceRoll()
}

// advanceRoll starts replacements up to the surge and finishes the roll
// once every slot serves the new generation.
func (t *table) advanceRoll() {
	r := t.roll
	if r == nil || t.stopping {
		return
	}
	inflight := 0
	for _, sl := range t.slots {
		if sl.next != nil {
			inflight++
		}
	}
	finished := inflight == 0
	for _, sl := range t.slots {
		if sl.vetoed || sl.next != nil || sl.w != nil && sl.w.info.Generation >= r.gen {
			if sl.w != nil && sl.w.info.State != Ready {
				finished = false // a new worker placed directly, not ready yet
			}
			continue
		}
		finished = false
		if sl.w == nil || inflight >= t.o.surge {
			continue // an empty slot is filled by schedule, in the new generation
		}
		w, err := t.spawn(sl, r.gen)
		if err != nil {
			t.abortRoll(fmt.Errorf("starting a new worker for slot %d: %w", sl.index, err))
			return
		}
		sl.next = w
		inflight++
	}
	if !finished {
		return
	}
	t.roll, t.gen, t.lastRollErr = nil, r.gen, nil
	t.log.Info("roll complete", zap.Uint64("generation", r.gen), zap.Duration("took", time.Since(r.started)))
	t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=%d workers ready, generation %d", len(t.slots), t.gen))
	replyAll(r.waiters, nil)
	t.afterOperation()
}

// abortRoll stops the roll: its new workers are killed, the old ones serve.
func (t *table) abortRoll(err error) {
	r := t.roll
	if r == nil {
		return
	}
	for _, sl := range t.slots {
		if w := sl.next; w != nil {
			sl.next = nil
			w.info.State = Stopping
			t.signal(w, syscall.SIGKILL)
		}
	}
	t.roll, t.lastRollErr = nil, err
	t.log.Error("roll failed; the previous generation keeps serving", zap.Uint64("generation", r.gen), zap.Error(err))
	t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=roll to generation %d failed: %v", r.gen, err))
	replyAll(r.waiters, fmt.Errorf("supervisor: roll to generation %d: %w", r.gen, err))
	t.afterOperation()
}

// failNext ends sl's replacement worker, which failed: during a roll, the
// roll stops; for a recycling, the serving worker stays and is recycled
// again after the backoff.
func (t *table) failNext(sl *slot, err error) {
	if w := sl.next; w != nil {
		sl.next = nil
		w.info.State = Stopping
		t.signal(w, syscall.SIGKILL)
	}
	if t.roll != nil {
		t.exitsBy.StartFailures++
		t.abortRoll(err)
		return
	}
	t.failed(sl, err)
	d := t.backoff(sl.failures)
	if sl.w != nil {
		sl.w.expireAt = time.Now().Add(d)
	}
	t.log.Error("replacement failed; the worker keeps serving", zap.Int("worker", sl.index), zap.Error(err),
		zap.Duration("retry_in", d))
}

// watchdogFire signals a worker that stopped pinging (or asked for it),
// and kills it after the grace period; it is then replaced.
func (t *table) watchdogFire(w *child, why string) {
	w.pingBy = time.Time{}
	if w.hung || w.info.State == Stopping {
		return
	}
	w.hung = true
	w.deadline = time.Now().Add(t.o.watchdogGrace)
	t.hung++
	t.log.Error("watchdog: worker "+why, append(workerFields(w.info),
		zap.Stringer("signal", t.o.watchdogSignal), zap.Duration("kill_after", t.o.watchdogGrace))...)
	t.signal(w, t.o.watchdogSignal)
}

// recycle replaces w, which reached its maximum lifetime, through the same
// readiness-gated path as a roll.
func (t *table) recycle(w *child) {
	sl := t.slotOf(w)
	if sl == nil || sl.w != w || t.stopping {
		return
	}
	if sl.next != nil || t.roll != nil || w.info.State != Ready {
		w.expireAt = time.Now().Add(t.o.backoffMin) // being replaced already, or not yet serving
		return
	}
	t.log.Info("recycling worker at its maximum lifetime", workerFields(w.info)...)
	nw, err := t.spawn(sl, w.info.Generation)
	if err != nil {
		t.failNext(sl, err)
		return
	}
	sl.next = nw
	t.recycled++
}

// afterOperation starts what waited for a roll or upgrade to end.
func (t *table) afterOperation() {
	if t.stopping || t.roll != nil {
		return
	}
	if t.upgrade != nil {
		t.startPreflight()
		return
	}
	if r := t.nextRoll; r != nil {
		t.nextRoll = nil
		t.startRoll(r)
	}
}

// scale sets the number of slots.
func (t *table) scale(n int) {
	if n == len(t.slots) || t.stopping {
		return
	}
	t.log.Info("scaling", zap.Int("from", len(t.slots)), zap.Int("to", n))
	for len(t.slots) < n {
		t.slots = append(t.slots, &slot{index: len(t.slots)})
	}
	for _, sl := range t.slots[n:] {
		if w := sl.next; w != nil {
			sl.next = nil
			w.info.State = Stopping
			t.signal(w, syscall.SIGKILL)
		}
		if sl.w != nil {
			t.retire(sl.w, "scaled down")
		}
	}
	t.slots = t.slots[:n]
	t.schedule()
	t.advanceRoll()
}

func (t *table) onNotify(m notifyMsg) {
	w := t.byPid[m.Pid]
	if w == nil && t.o.notifyAll {
		if pid, ok := descendantOf(m.Pid, func(pid int) bool { return t.byPid[pid] != nil }); ok {
			w = t.byPid[pid]
		}
	}
	if w == nil {
		t.foreign++
		t.log.Debug("notify message from a process that is not a worker", zap.Int("pid", m.Pid))
		return
	}
	if m.Status != "" {
		w.status = m.Status
	}
	if m.Watchdog && t.o.watchdog > 0 && !w.hung {
		w.pingBy = time.Now().Add(t.o.watchdog)
	}
	if m.WatchdogTrigger {
		t.watchdogFire(w, "asked for the watchdog (WATCHDOG=trigger)")
	}
	if m.Ready && t.o.readiness.mode == readyNotify {
		t.ready(w)
	}
}

func (t *table) onSignal(sig os.Signal) {
	t.log.Info("signal", zap.Stringer("signal", sig))
	switch sig {
	case syscall.SIGTERM, syscall.SIGINT:
		t.stopSignals++
		if t.stopSignals == 1 {
			t.stop(t.o.stopTimeout)
		} else {
			t.log.Warn("second stop signal: killing workers")
			t.killAll()
		}
	case syscall.SIGHUP:
		t.requestRoll(nil)
	case sigUpgrade:
		t.requestUpgrade(nil)
	case sigMore:
		t.scale(len(t.slots) + 1)
	case sigFewer:
		t.scale(max(1, len(t.slots)-1))
	}
}

// stop begins a graceful stop: no more restarts or rolls, the stop signal
// to every worker, SIGKILL after timeout (0: only when killAll is called).
func (t *table) stop(timeout time.Duration) {
	if t.stopping {
		return
	}
	t.stopping = true
	t.sdNotify("STOPPING=1")
	for _, r := range []*roll{t.roll, t.nextRoll} {
		if r != nil {
			replyAll(r.waiters, ErrClosed)
		}
	}
	if t.upgrade != nil {
		replyAll(t.upgrade.waiters, ErrClosed)
	}
	t.roll, t.nextRoll, t.upgrade = nil, nil, nil
	for w := range t.live {
		if w.info.State != Stopping {
			w.info.State = Stopping
			t.signal(w, t.o.stopSignal)
		}
		w.deadline = time.Time{}
		if timeout > 0 {
			w.deadline = time.Now().Add(timeout)
		}
	}
}

func (t *table) killAll() {
	for w := range t.live {
		w.info.State = Stopping
		w.deadline = time.Time{}
		t.signal(w, syscall.SIGKILL)
	}
}

func (t *table) signal(w *child, sig syscall.Signal) {
	if err := w.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.log.Warn("signal worker", append(workerFields(w.info), zap.Stringer("signal", sig), zap.Error(err))...)
	}
}

// sdNotify tells the service manager that started the supervisor, if any.
func (t *table) sdNotify(state string) {
	if _, err := worker.Notify(state); err != nil {
		t.log.Warn("notifying the service manager", zap.Error(err))
	}
}

func (t *table) stats() Stats {
	st := Stats{
		Generation:    t.gen,
		Rolling:       t.roll != nil,
		Restarts:      t.restarts,
		Exits:         t.exitsBy,
		NotifySocket:  t.notify.Name(),
		ForeignNotify: t.foreign,
		NotifyDropped: t.notify.dropped(),
		WatchdogKills: t.hung,
		Recycled:      t.recycled,
	}
	if t.lastRollErr != nil {
		st.LastRollError = t.lastRollErr.Error()
	}
	for _, sl := range t.slots {
		for _, w := range []*child{sl.w, sl.next} {
			if w != nil {
				info := w.info
				info.Status = w.status
				st.Workers = append(st.Workers, info)
			}
		}
	}
	for w := range t.live {
		if t.slotOf(w) == nil {
			st.Retiring++
		}
	}
	return st
}

func reply(done chan<- error, err error) {
	if done != nil {
		done <- err
	}
}

func replyAll(waiters []chan<- error, err error) {
	for _, w := range waiters {
		w <- err
	}
}

func appendWaiter(ws []chan<- error, done chan<- error) []chan<- error {
	if done == nil {
		return ws
	}
	return append(ws, done)
}

func workerFields(w WorkerInfo) []zap.Field {
	return []zap.Field{zap.Int("worker", w.Slot), zap.Int("pid", w.Pid), zap.Uint64("generation", w.Generation)}
}

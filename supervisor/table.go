package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
)

// table is the worker table. Only the run goroutine touches it.
type table struct {
	s      *Supervisor
	log    *zap.Logger
	reaper *reap.Reaper

	socks   []*listener.Socket // passed to workers, in fd order
	owned   []*listener.Socket // the part of socks that Run opened and closes
	devnull *os.File

	gen   uint64
	slots []*slot
	live  map[*worker]struct{} // every started process not yet reaped

	exits    chan exit
	watchers sync.WaitGroup

	stopping bool
	wake     *time.Timer // fires when a delayed restart is due

	restarts int
	exitsBy  ExitCounts
}

// slot is one of the N places a worker runs in.
type slot struct {
	index     int
	w         *worker // nil while empty
	failures  int     // consecutive start failures
	notBefore time.Time
	restarts  int
	vetoed    bool // OnExit refused the restart
}

type worker struct {
	info    WorkerInfo
	proc    *reap.Process
	readyAt time.Time // zero until ready
}

type exit struct {
	w  *worker
	st reap.Status
}

func (s *Supervisor) newTable() (_ *table, err error) {
	t := &table{
		s:     s,
		log:   s.log,
		gen:   1,
		live:  make(map[*worker]struct{}),
		exits: make(chan exit),
		wake:  time.NewTimer(time.Hour),
	}
	t.wake.Stop()
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	for _, a := range s.addrs {
		sock, err := listener.Listen(a)
		if err != nil {
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		t.owned = append(t.owned, sock)
		t.log.Info("listening", zap.String("name", sock.Name()), zap.Stringer("addr", sock.Addr()))
	}
	t.socks = append(slices.Clone(t.owned), s.o.sockets...)
	if t.devnull, err = os.Open(os.DevNull); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	var ropts []reap.Option
	ropts = append(ropts, reap.WithLogger(t.log))
	if s.o.subreaper {
		ropts = append(ropts, reap.WithSubreaper(), reap.WithOrphanFunc(func(st reap.Status) {
			t.log.Debug("reaped orphan", zap.Int("pid", st.Pid), zap.Stringer("status", st))
		}))
	}
	if t.reaper, err = reap.New(ropts...); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	t.slots = make([]*slot, s.o.workers)
	for i := range t.slots {
		t.slots[i] = &slot{index: i}
	}
	return t, nil
}

// close releases what newTable opened. The loop has returned, so every
// worker has been reaped and every watcher has delivered its exit.
func (t *table) close() {
	t.watchers.Wait()
	t.wake.Stop()
	if t.reaper != nil {
		t.reaper.Close()
	}
	if t.devnull != nil {
		t.devnull.Close()
	}
	for _, sock := range t.owned {
		sock.Close()
	}
}

// loop is the run goroutine: it owns the table until every worker is gone.
func (t *table) loop(ctx context.Context) error {
	s := t.s
	done := ctx.Done()
	stopC, killC := s.stopC, s.killC
	var killTimer <-chan time.Time

	t.log.Info("starting workers", zap.Int("workers", len(t.slots)), zap.String("command", s.cmd.Path))
	t.schedule()
	for !t.stopping || len(t.live) > 0 {
		select {
		case e := <-t.exits:
			t.onExit(e)
		case f := <-s.reqs:
			f(t)
		case <-t.wake.C:
			t.schedule()
		case <-done:
			done, stopC = nil, nil
			t.log.Info("context done: stopping", zap.Duration("timeout", s.o.stopTimeout))
			t.stop()
			killTimer = time.After(s.o.stopTimeout)
		case <-stopC:
			done, stopC = nil, nil
			t.log.Info("stopping")
			t.stop()
		case <-killC:
			killC, killTimer = nil, nil
			t.killAll()
		case <-killTimer:
			killC, killTimer = nil, nil
			t.log.Warn("stop timeout: killing workers", zap.Int("left", len(t.live)))
			t.killAll()
		}
	}
	t.log.Info("stopped", zap.Int("restarts", t.restarts))
	return nil
}

// schedule starts a worker in every empty slot whose backoff has passed and
// arms the wake timer for the earliest one still waiting.
func (t *table) schedule() {
	if t.stopping {
		return
	}
	now := time.Now()
	var next time.Time
	for _, sl := range t.slots {
		if sl.w != nil || sl.vetoed {
			continue
		}
		if now.Before(sl.notBefore) {
			if next.IsZero() || sl.notBefore.Before(next) {
				next = sl.notBefore
			}
			continue
		}
		t.spawn(sl)
		if sl.w == nil && (next.IsZero() || sl.notBefore.Before(next)) {
			next = sl.notBefore
		}
	}
	t.wake.Stop()
	if !next.IsZero() {
		t.wake.Reset(time.Until(next))
	}
}

// spawn starts a worker in sl. A failure counts as a start failure and
// delays the slot.
func (t *table) spawn(sl *slot) {
	s := t.s
	sp := &Spawn{
		Path:       s.cmd.Path,
		Args:       slices.Clone(s.cmd.Args),
		Dir:        s.cmd.Dir,
		Env:        s.workerEnv(t.socks, sl.index, t.gen),
		Stdin:      t.devnull,
		Stdout:     os.Stdout,
		Stderr:     os.Stderr,
		Worker:     sl.index,
		Generation: t.gen,
	}
	if h := s.o.hooks.BeforeSpawn; h != nil {
		if err := h(sp); err != nil {
			t.startFailed(sl, fmt.Errorf("before-spawn hook: %w", err))
			return
		}
	}
	proc, err := t.start(sp)
	if err != nil {
		t.startFailed(sl, err)
		return
	}
	now := time.Now()
	w := &worker{
		info: WorkerInfo{
			Slot:       sl.index,
			Pid:        proc.Pid(),
			Generation: t.gen,
			State:      Ready,
			Started:    now,
			Restarts:   sl.restarts,
		},
		proc:    proc,
		readyAt: now,
	}
	sl.w = w
	t.live[w] = struct{}{}
	t.watchers.Add(1)
	go func() {
		defer t.watchers.Done()
		<-proc.Done()
		st, ok := proc.Status()
		if !ok { // reaped by someone else: the status is lost, not the exit
			st = reap.Status{Pid: proc.Pid(), Code: -1, Time: time.Now()}
		}
		t.exits <- exit{w, st} // the loop runs until every live worker is reaped
	}()
	t.log.Info("worker started", workerFields(w.info)...)
	if h := s.o.hooks.AfterSpawn; h != nil {
		h(w.info)
	}
}

// start starts the process described by sp. Every file is handed over as a
// raw descriptor: fds 0-2, the sockets from fd 3, then the extra files.
func (t *table) start(sp *Spawn) (proc *reap.Process, err error) {
	std, err := rawFds([]*os.File{sp.Stdin, sp.Stdout, sp.Stderr})
	if err != nil {
		return nil, err
	}
	extra, err := rawFds(sp.ExtraFiles)
	if err != nil {
		return nil, err
	}
	path, argv, env := listener.Trampoline(sp.Path, sp.Args, sp.Env)
	cerr := listener.ControlAll(t.socks, func(socks []uintptr) {
		proc, err = t.reaper.Start(path, argv, &syscall.ProcAttr{
			Dir:   sp.Dir,
			Env:   env,
			Files: slices.Concat(std, socks, extra),
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
	sl.failures++
	t.exitsBy.StartFailures++
	d := t.backoff(sl.failures)
	sl.notBefore = time.Now().Add(d)
	t.log.Error("worker start failed", zap.Int("worker", sl.index), zap.Error(err),
		zap.Int("failures", sl.failures), zap.Duration("retry_in", d))
}

// backoff is the delay after n consecutive start failures.
func (t *table) backoff(n int) time.Duration {
	d := t.s.o.backoffMin
	for i := 1; i < n && d < t.s.o.backoffMax; i++ {
		d *= 2
	}
	return min(d, t.s.o.backoffMax)
}

func (t *table) onExit(e exit) {
	w, st := e.w, e.st
	delete(t.live, w)
	switch {
	case st.Signal != 0:
		t.exitsBy.Signaled++
	case st.Code == 0:
		t.exitsBy.Clean++
	default:
		t.exitsBy.Failed++
	}
	sl := t.slots[w.info.Slot]
	asked := t.stopping || w.info.State == Stopping
	if sl.w == w {
		sl.w = nil
	}
	fields := append(workerFields(w.info), zap.Stringer("status", st))
	if asked {
		t.log.Info("worker exited", fields...)
		return
	}
	up := !w.readyAt.IsZero() && st.Time.Sub(w.readyAt) >= t.s.o.minUptime
	if up {
		sl.failures = 0
	} else {
		sl.failures++
		t.exitsBy.StartFailures++
	}
	restart := true
	if h := t.s.o.hooks.OnExit; h != nil {
		restart = h(w.info, st)
	}
	if !restart {
		sl.vetoed = true
		t.log.Warn("worker exited; restart vetoed by hook", fields...)
		return
	}
	var delay time.Duration
	if !up {
		delay = t.backoff(sl.failures)
	}
	sl.notBefore = time.Now().Add(delay)
	sl.restarts++
	t.restarts++
	t.log.Warn("worker died; restarting", append(fields,
		zap.Bool("start_failure", !up), zap.Duration("delay", delay))...)
	t.schedule()
}

// stop begins a graceful stop: no more restarts, the stop signal to all.
func (t *table) stop() {
	t.stopping = true
	t.wake.Stop()
	for w := range t.live {
		t.signal(w, t.s.o.stopSignal)
		w.info.State = Stopping
	}
}

func (t *table) killAll() {
	for w := range t.live {
		t.signal(w, syscall.SIGKILL)
		w.info.State = Stopping
	}
}

func (t *table) signal(w *worker, sig syscall.Signal) {
	if err := w.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.log.Warn("signal worker", append(workerFields(w.info), zap.Stringer("signal", sig), zap.Error(err))...)
	}
}

func (t *table) stats() Stats {
	st := Stats{Generation: t.gen, Restarts: t.restarts, Exits: t.exitsBy}
	for _, sl := range t.slots {
		if sl.w != nil {
			st.Workers = append(st.Workers, sl.w.info)
		}
	}
	return st
}

func workerFields(w WorkerInfo) []zap.Field {
	return []zap.Field{zap.Int("worker", w.Slot), zap.Int("pid", w.Pid), zap.Uint64("generation", w.Generation)}
}

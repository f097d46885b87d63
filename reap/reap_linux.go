package reap

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// sigBuffer is the SIGCHLD doorbell's buffer. Rings coalesce anyway; a
// generous buffer only keeps the runtime from dropping them while a drain runs.
const sigBuffer = 2048

// drainBatch bounds how many children one drain reaps while holding r.mu, so
// a flood of exits does not stall Start.
const drainBatch = 64

func (r *Reaper) init() error {
	if !r.opts.subreaper {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("reap: subreaper: %w", os.NewSyscallError("prctl", err))
	}
	r.sigs = make(chan os.Signal, sigBuffer)
	r.stop = make(chan struct{})
	signal.Notify(r.sigs, syscall.SIGCHLD)
	r.wg.Add(1)
	go r.drainLoop()
	return nil
}

func (r *Reaper) start(path string, argv []string, a syscall.ProcAttr) (*Process, error) {
	var sys syscall.SysProcAttr
	if a.Sys != nil {
		if a.Sys.PidFD != nil {
			return nil, errors.New("reap: start: attr.Sys.PidFD must be nil, the reaper sets it")
		}
		sys = *a.Sys
	}
	pidfd := -1
	sys.PidFD = &pidfd
	a.Sys = &sys

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return nil, ErrClosed
	}
	pid, _, err := syscall.StartProcess(path, argv, &a)
	if err != nil {
		return nil, fmt.Errorf("reap: start: %w", &os.PathError{Op: "fork/exec", Path: path, Err: err})
	}
	if pidfd < 0 {
		// No CLONE_PIDFD. The child is ours and unreaped, so its pid cannot
		// have been reused yet.
		pidfd, err = unix.PidfdOpen(pid, 0)
		if err != nil {
			killAndReap(pid)
			return nil, fmt.Errorf("reap: start %s: %w", path, os.NewSyscallError("pidfd_open", err))
		}
	}
	p, err := r.watchLocked(pid, pidfd)
	if err != nil {
		killAndReap(pid)
		return nil, fmt.Errorf("reap: start %s: %w", path, err)
	}
	r.opts.log.Debug("started", zap.Int("pid", pid), zap.String("path", path))
	return p, nil
}

func (r *Reaper) adopt(pid int) (*Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closing {
		return nil, ErrClosed
	}
	if old := r.procs[pid]; old != nil && !old.isDone() {
		return nil, fmt.Errorf("reap: adopt pid %d: already watched", pid)
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("reap: adopt pid %d: %w", pid, os.NewSyscallError("pidfd_open", err))
	}
	// Is it our child? WNOWAIT leaves a zombie in place for the watcher.
	var info unix.Siginfo
	err = ignoringEINTR(func() error {
		return unix.Waitid(unix.P_PIDFD, pidfd, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	})
	if err != nil {
		unix.Close(pidfd)
		if errors.Is(err, unix.ECHILD) {
			return nil, fmt.Errorf("reap: adopt pid %d: not a child of this process: %w", pid, os.NewSyscallError("waitid", err))
		}
		return nil, fmt.Errorf("reap: adopt pid %d: %w", pid, os.NewSyscallError("waitid", err))
	}
	p, err := r.watchLocked(pid, pidfd)
	if err != nil {
		return nil, fmt.Errorf("reap: adopt pid %d: %w", pid, err)
	}
	if r.opts.subreaper {
		// It may be a zombie whose SIGCHLD was already answered: ring once
		// more. A full doorbell means a drain is pending anyway.
		select {
		case r.sigs <- syscall.SIGCHLD:
		default:
		}
	}
	r.opts.log.Debug("adopted", zap.Int("pid", pid))
	return p, nil
}

// watchLocked wraps pidfd and registers the process; in default mode it also
// starts the process's watcher. It owns pidfd from the call on, and closes it
// on error. r.mu must be held.
func (r *Reaper) watchLocked(pid, pidfd int) (*Process, error) {
	if !r.opts.subreaper {
		// Non-blocking, so that os.NewFile parks it in the netpoller.
		if err := unix.SetNonblock(pidfd, true); err != nil {
			unix.Close(pidfd)
			return nil, os.NewSyscallError("fcntl", err)
		}
	}
	f := os.NewFile(uintptr(pidfd), "pidfd:"+strconv.Itoa(pid))
	rc, err := f.SyscallConn()
	if err == nil && !r.opts.subreaper {
		// Only a file in the netpoller has deadlines: this proves the
		// watcher will park there rather than fail.
		err = f.SetReadDeadline(time.Time{})
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pidfd: %w", err)
	}
	p := &Process{r: r, pid: pid, pidfd: f, rc: rc, done: make(chan struct{})}
	r.procs[pid] = p
	if !r.opts.subreaper {
		r.wg.Add(1)
		go r.watch(p)
	}
	return p, nil
}

// watch waits, parked in the netpoller, until p's pidfd is readable (the
// process exited), then reaps exactly p's pid. Default mode only.
func (r *Reaper) watch(p *Process) {
	defer r.wg.Done()
	var (
		st     Status
		reaped bool
		werr   error
	)
	err := p.rc.Read(func(uintptr) bool {
		st, reaped, werr = reapPid(p.pid)
		return reaped || werr != nil
	})
	if err != nil && !reaped && werr == nil {
		// Close closed the pidfd. One last look, so that an exit that
		// already happened is delivered rather than left behind.
		st, reaped, werr = reapPid(p.pid)
		if !reaped && werr == nil && !r.isClosing() {
			r.opts.log.Error("watch ended", zap.Int("pid", p.pid), zap.Error(err))
		}
	}
	switch {
	case reaped:
		r.deliver(p, st)
	case werr != nil:
		r.lose(p, werr)
	default:
		// The Reaper is closing and the process still runs: leave it.
	}
}

func (r *Reaper) isClosing() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.closing
}

// deliver releases p's pidfd, then publishes its status: once Done is
// closed, no descriptor of p is left open. Signal tells a pidfd closed by
// reaping from one closed by Close through p.reaped.
func (r *Reaper) deliver(p *Process, st Status) {
	r.forget(p)
	p.status = st
	p.finish()
	r.opts.log.Debug("reaped", zap.Int("pid", st.Pid), zap.Stringer("status", st))
}

// lose records that p's status was taken by another waiter.
func (r *Reaper) lose(p *Process, err error) {
	r.forget(p)
	p.err = fmt.Errorf("reap: pid %d was reaped elsewhere: %w", p.pid, os.NewSyscallError("wait4", err))
	p.finish()
	r.opts.log.Warn("exit status lost", zap.Int("pid", p.pid), zap.Error(err))
}

func (r *Reaper) forget(p *Process) {
	r.mu.Lock()
	defer r.mu.Unlock()
	// The pid may already belong to a newer child.
	if r.procs[p.pid] == p {
		delete(r.procs, p.pid)
	}
}

// reapPid reaps pid if it has exited. Safe without a pid-reuse race: an
// exited child keeps its pid until it is reaped.
func reapPid(pid int) (Status, bool, error) {
	for {
		var (
			ws syscall.WaitStatus
			ru syscall.Rusage
		)
		wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, &ru)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return Status{}, false, err
		}
		if wpid != pid || !isExit(ws) {
			return Status{}, false, nil
		}
		return newStatus(wpid, ws, &ru), true, nil
	}
}

// drainLoop is the subreaper's goroutine: one drain at start, one per ring of
// the SIGCHLD doorbell, a last one at Close.
func (r *Reaper) drainLoop() {
	defer r.wg.Done()
	r.drain()
	for {
		select {
		case <-r.sigs:
			r.drain()
		case <-r.stop:
			r.drain()
			return
		}
	}
}

// drained is one exit collected by the drain.
type drained struct {
	p  *Process // nil for an orphan
	st Status
}

// drain reaps every exited child, in batches, until wait4 reports none left.
func (r *Reaper) drain() {
	for {
		batch, more := r.drainSome()
		for _, x := range batch {
			switch {
			case x.p != nil:
				x.p.status = x.st
				x.p.finish()
				r.opts.log.Debug("reaped", zap.Int("pid", x.st.Pid), zap.Stringer("status", x.st))
			case r.opts.orphan != nil:
				r.opts.orphan(x.st)
			default:
				r.opts.log.Debug("reaped orphan", zap.Int("pid", x.st.Pid), zap.Stringer("status", x.st))
			}
		}
		if !more {
			return
		}
	}
}

// drainSome reaps up to drainBatch children with wait4(-1, WNOHANG) while
// holding r.mu, and reports whether more may be waiting.
func (r *Reaper) drainSome() ([]drained, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []drained
	for len(out) < drainBatch {
		var (
			ws syscall.WaitStatus
			ru syscall.Rusage
		)
		// Never __WALL: that would also reap threads' clone children
		// belonging to no one here.
		wpid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, &ru)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			if err != syscall.ECHILD {
				r.opts.log.Error("drain", zap.Error(os.NewSyscallError("wait4", err)))
			}
			return out, false
		}
		if wpid <= 0 {
			return out, false
		}
		if !isExit(ws) {
			continue
		}
		st := newStatus(wpid, ws, &ru)
		p := r.procs[wpid]
		if p != nil {
			delete(r.procs, wpid)
		}
		out = append(out, drained{p: p, st: st})
	}
	return out, true
}

func (r *Reaper) close() {
	r.mu.Lock()
	r.closing = true
	live := make([]*Process, 0, len(r.procs))
	for _, p := range r.procs {
		live = append(live, p)
	}
	r.mu.Unlock()

	if r.opts.subreaper {
		signal.Stop(r.sigs)
		close(r.stop)
	} else {
		// Closing a pidfd wakes its watcher; the File keeps the number
		// from being reused while a Signal is using it.
		for _, p := range live {
			p.pidfd.Close()
		}
	}
	r.wg.Wait()

	r.mu.Lock()
	for pid, p := range r.procs {
		p.pidfd.Close()
		delete(r.procs, pid)
	}
	r.mu.Unlock()
}

// finish closes p's pidfd and then Done; its status is already set.
func (p *Process) finish() {
	p.reaped.Store(true)
	p.pidfd.Close()
	close(p.done)
}

func (p *Process) signal(sig syscall.Signal) error {
	var serr error
	err := p.rc.Control(func(fd uintptr) {
		serr = unix.PidfdSendSignal(int(fd), sig, nil, 0)
	})
	if err != nil {
		// The pidfd is closed: reaped, lost, or the Reaper was closed.
		if p.reaped.Load() {
			return os.ErrProcessDone
		}
		return ErrClosed
	}
	if serr == unix.ESRCH {
		return os.ErrProcessDone
	}
	if serr != nil {
		return fmt.Errorf("reap: signal pid %d: %w", p.pid, os.NewSyscallError("pidfd_send_signal", serr))
	}
	return nil
}

// isExit reports whether ws is a termination, not a stop or continue (which a
// ptraced child can report even without WUNTRACED).
func isExit(ws syscall.WaitStatus) bool { return ws.Exited() || ws.Signaled() }

func newStatus(pid int, ws syscall.WaitStatus, ru *syscall.Rusage) Status {
	s := Status{Pid: pid, Rusage: *ru, Time: time.Now()}
	if ws.Signaled() {
		s.Code = -1
		s.Signal = ws.Signal()
		s.CoreDump = ws.CoreDump()
	} else {
		s.Code = ws.ExitStatus()
	}
	return s
}

// killAndReap ends a child that was started but cannot be watched. It is our
// unreaped child (r.mu keeps the subreaper drain away), so its pid cannot
// have been reused.
func killAndReap(pid int) {
	unix.Kill(pid, unix.SIGKILL)
	var ws syscall.WaitStatus
	ignoringEINTR(func() error {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		return err
	})
}

func ignoringEINTR(f func() error) error {
	for {
		if err := f(); err != syscall.EINTR {
			return err
		}
	}
}

package supervisor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/cloexec"
	"github.com/handoff-dev/handoff/internal/launch"
	"github.com/handoff-dev/handoff/reap"
)

// envJanitorState hands the janitor ("PID:FD", its pid and the write end of
// its pipe) across an in-place upgrade.
const envJanitorState = "HANDOFF_JANITOR_STATE"

// The janitor makes the workers die with the supervisor. A worker written
// in Go watches the liveness pipe and exits when the supervisor is gone; a
// program that knows nothing of handoff (gunicorn, uvicorn, a shell
// script) would keep serving on the port, and its own children with it.
// So every supervisor starts one janitor: its own binary re-executed (see
// package launch), in a process group of its own, holding the read end of a
// pipe whose write end only the supervisor holds. The supervisor tells it
// "+PID" for every worker it starts and "-PID" for every worker it reaps;
// when the pipe reads end-of-file (the supervisor died, even by SIGKILL) the
// janitor stops each listed worker's process group as the supervisor would
// have: the stop signal, then SIGKILL after the stop timeout; and exits.
//
// An in-place upgrade keeps the pipe open across the exec, so the janitor
// neither notices nor kills anything, and the new program takes it over.
// PR_SET_PDEATHSIG was the other candidate: it fires when the *thread*
// that forked the worker ends (golang/go#27505), reaches only the worker
// and not its children, and an exec ends every thread but one.
type janitor struct {
	proc *reap.Process
	w    *os.File // the pipe's write end
	warn bool     // a write failed and was logged
}

// startJanitor takes over the janitor an upgrade handed on, or starts one
// and tells it about the workers already running.
func (t *table) startJanitor() {
	if v, ok := os.LookupEnv(envJanitorState); ok {
		os.Unsetenv(envJanitorState)
		if err := t.adoptJanitor(v); err == nil {
			return
		} else {
			t.log.Warn("the janitor of the previous program is lost; starting another", zap.Error(err))
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.log.Error("janitor: workers will not die with the supervisor", zap.Error(err))
		return
	}
	defer r.Close()
	fds, err := rawFds([]*os.File{r, t.devnull, os.Stderr})
	var proc *reap.Process
	if err == nil {
		proc, err = t.reaper.Start("/proc/self/exe", []string{"handoff-janitor"}, &syscall.ProcAttr{
			Env: []string{launch.EnvJanitor + "=1",
				fmt.Sprintf("%s=%d %d", launch.EnvJanitorStop, t.o.stopSignal, t.o.stopTimeout.Milliseconds())},
			Files: fds,
			Sys:   sysProcAttr(nil, nil), // a group of its own: a terminal's ^C is not for it
		})
	}
	if err != nil {
		w.Close()
		t.log.Error("janitor: workers will not die with the supervisor", zap.Error(err))
		return
	}
	t.janitor = &janitor{proc: proc, w: w}
	t.log.Debug("janitor started", zap.Int("pid", proc.Pid()))
	for c := range t.live {
		t.tellJanitor('+', c.info.Pid)
	}
	t.tellJanitorCgroups()
	t.watchJanitor()
}

// adoptJanitor takes over the janitor described by v, "PID:FD".
func (t *table) adoptJanitor(v string) error {
	p, f, ok := strings.Cut(v, ":")
	pid, err1 := strconv.Atoi(p)
	fd, err2 := strconv.Atoi(f)
	if !ok || err1 != nil || err2 != nil || pid < 1 || fd < 3 {
		return fmt.Errorf("%s=%q: want PID:FD", envJanitorState, v)
	}
	w := os.NewFile(uintptr(fd), "janitor")
	if err := cloexec.Set(w); err != nil {
		w.Close()
		return fmt.Errorf("janitor pipe: %w", err)
	}
	proc, err := t.reaper.Adopt(pid)
	if err != nil {
		w.Close()
		return fmt.Errorf("janitor: %w", err)
	}
	t.janitor = &janitor{proc: proc, w: w}
	t.watchJanitor()
	return nil
}

// readoptJanitor watches the janitor again with a new reaper, after an
// upgrade's exec failed.
func (t *table) readoptJanitor() {
	j := t.janitor
	if j == nil {
		return
	}
	proc, err := t.reaper.Adopt(j.proc.Pid())
	if err != nil {
		t.log.Warn("janitor lost after a failed upgrade; starting another", zap.Error(err))
		j.w.Close()
		t.janitor = nil
		t.startJanitor()
		return
	}
	j.proc = proc
	t.watchJanitor()
}

// watchJanitor reports the janitor's exit to the loop.
func (t *table) watchJanitor() {
	proc, gone := t.janitor.proc, t.reaperGone
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		select {
		case <-proc.Done():
		case <-gone:
			return
		case <-t.quit:
			return
		}
		select {
		case t.janitorExits <- proc:
		case <-t.quit:
		}
	}()
}

// onJanitorExit starts a new janitor when the one running died.
func (t *table) onJanitorExit(p *reap.Process) {
	j := t.janitor
	if j == nil || j.proc != p {
		return
	}
	st, _ := p.Status()
	j.w.Close()
	t.janitor = nil
	if t.stopping {
		t.log.Warn("the janitor exited", zap.Int("pid", p.Pid()), zap.Stringer("status", st))
		return
	}
	t.log.Warn("the janitor exited; starting another", zap.Int("pid", p.Pid()), zap.Stringer("status", st))
	t.startJanitor()
}

// tellJanitor sends "+PID" or "-PID".
func (t *table) tellJanitor(op byte, pid int) {
	j := t.janitor
	if j == nil {
		return
	}
	if _, err := j.w.Write([]byte(string(op) + strconv.Itoa(pid) + "\n")); err != nil && !j.warn {
		j.warn = true
		t.log.Warn("janitor", zap.Error(err))
	}
}

// tellJanitorCgroups sends "cDIR", the directory of the workers' cgroups,
// so that the janitor stops (and removes) them too.
func (t *table) tellJanitorCgroups() {
	j := t.janitor
	if j == nil || t.cgBase == "" {
		return
	}
	if _, err := j.w.Write([]byte("c" + t.cgBase + "\n")); err != nil && !j.warn {
		j.warn = true
		t.log.Warn("janitor", zap.Error(err))
	}
}

// janitorExec returns the variable and the descriptor that hand the
// janitor to the program an upgrade execs; ok is false without a janitor.
func (t *table) janitorExec() (env string, fd int, ok bool) {
	j := t.janitor
	if j == nil {
		return "", 0, false
	}
	fds, err := rawFds([]*os.File{j.w})
	if err != nil {
		return "", 0, false
	}
	return fmt.Sprintf("%s=%d:%d", envJanitorState, j.proc.Pid(), fds[0]), int(fds[0]), true
}

// stopJanitor closes the pipe after a clean stop, when no worker is left
// to kill, and waits for the janitor to exit.
func (t *table) stopJanitor() {
	j := t.janitor
	if j == nil {
		return
	}
	t.janitor = nil
	j.w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := j.proc.Wait(ctx); err != nil {
		j.proc.Signal(syscall.SIGKILL)
		j.proc.Wait(context.Background())
	}
}

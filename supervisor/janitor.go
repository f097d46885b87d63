package supervisor

import (
	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/janitor"
	"github.com/handoff-dev/handoff/reap"
)

// The janitor makes the workers die with the supervisor, even by SIGKILL
// (package internal/janitor says how). The table starts one, tells it
// about every worker, and starts another if it dies.

// startJanitor takes over the janitor an upgrade handed on, or starts one
// and tells it about the workers already running.
func (t *table) startJanitor() {
	j, err := janitor.Inherited(t.reaper)
	if err != nil {
		t.log.Warn("the janitor of the previous program is lost; starting another", zap.Error(err))
	}
	if j != nil {
		t.janitor = j
		t.watchJanitor()
		return
	}
	if j, err = janitor.Start(t.reaper, t.devnull, t.o.stopSignal, t.o.stopTimeout); err != nil {
		t.log.Error("janitor: workers will not die with the supervisor", zap.Error(err))
		return
	}
	t.janitor = j
	t.log.Debug("janitor started", zap.Int("pid", j.Process().Pid()))
	for c := range t.live {
		t.tellJanitor('+', c.info.Pid)
	}
	t.tellJanitorCgroups()
	t.watchJanitor()
}

// readoptJanitor watches the janitor again with a new reaper, after an
// upgrade's exec failed.
func (t *table) readoptJanitor() {
	j := t.janitor
	if j == nil {
		return
	}
	if err := j.Readopt(t.reaper); err != nil {
		t.log.Warn("janitor lost after a failed upgrade; starting another", zap.Error(err))
		t.janitor = nil
		t.startJanitor()
		return
	}
	t.watchJanitor()
}

// watchJanitor reports the janitor's exit to the loop.
func (t *table) watchJanitor() {
	proc, gone := t.janitor.Process(), t.reaperGone
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
	if j == nil || j.Process() != p {
		return
	}
	st, _ := p.Status()
	j.Close()
	t.janitor = nil
	if t.stopping {
		t.log.Warn("the janitor exited", zap.Int("pid", p.Pid()), zap.Stringer("status", st))
		return
	}
	t.log.Warn("the janitor exited; starting another", zap.Int("pid", p.Pid()), zap.Stringer("status", st))
	t.startJanitor()
}

// tellJanitor sends "+PID" (started) or "-PID" (reaped).
func (t *table) tellJanitor(op byte, pid int) {
	j := t.janitor
	if j == nil {
		return
	}
	tell := j.Started
	if op == '-' {
		tell = j.Reaped
	}
	if err := tell(pid); err != nil {
		t.log.Warn("janitor", zap.Error(err))
	}
}

// tellJanitorCgroups sends the directory of the workers' cgroups, so that
// the janitor stops (and removes) them too.
func (t *table) tellJanitorCgroups() {
	j := t.janitor
	if j == nil || t.cgBase == "" {
		return
	}
	if err := j.Cgroups(t.cgBase); err != nil {
		t.log.Warn("janitor", zap.Error(err))
	}
}

// janitorExec returns the variable and the descriptor that hand the
// janitor to the program an upgrade execs; ok is false without a janitor.
func (t *table) janitorExec() (env string, fd int, ok bool) {
	if t.janitor == nil {
		return "", 0, false
	}
	env, fd, err := t.janitor.Exec()
	return env, fd, err == nil
}

// stopJanitor closes the pipe after a clean stop, when no worker is left
// to kill, and waits for the janitor to exit.
func (t *table) stopJanitor() {
	if j := t.janitor; j != nil {
		t.janitor = nil
		j.Stop()
	}
}

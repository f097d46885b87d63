package supervisor

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/reap"
)

func (t *table) startFailed(sl *slot, err error) {
	t.failed(sl, err)
	d := t.backoff(sl.failures)
	sl.notBefore = time.Now().Add(d)
	t.failureLog(sl)("worker start failed", zap.Int("worker", sl.index), zap.Error(err),
		zap.Int("failures", sl.failures), zap.Duration("retry_in", d))
}

// crashLoop is the number of start failures in a row that makes a slot
// crash-looping, for the log and Stats.
const crashLoop = 3

// failed counts a start failure of sl, and gives up when there have been
// too many in a row (WithMaxStartFailures).
func (t *table) failed(sl *slot, err error) {
	if sl.failures == 0 {
		sl.failingSince = time.Now()
	}
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

// failsRoll reports whether a failure of w, a worker in its slot, fails
// the roll in progress: w is of the new generation (placed straight into
// an empty slot) and has not been ready.
func (t *table) failsRoll(w *child) bool {
	r := t.roll
	return r != nil && !r.back && w.info.Generation == r.gen && (w.readyAt.IsZero() || !r.accepted) && t.slotOf(w) != nil
}

func (t *table) onExit(e exit) {
	w, st := e.w, e.st
	defer t.hookExit(w, st)
	delete(t.live, w)
	if t.byPid[w.info.Pid] == w {
		delete(t.byPid, w.info.Pid)
	}
	t.tellJanitor('-', w.info.Pid)
	t.cgroupExited(w)
	t.handoverExited(w)
	fields := append(workerFields(w.info), zap.Stringer("status", st))
	if t.stopping {
		t.groups[w.info.Pid] = true
		t.orphaned(w.info.Pid) // what its tree left behind
		t.treeExited(w)
	}
	asked := t.stopping || w.info.State == Stopping
	t.countExit(w, st, asked)
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
		when := "before it was ready"
		if !w.readyAt.IsZero() {
			when = fmt.Sprintf("%v after it was ready, within the accept window", st.Time.Sub(w.readyAt).Round(time.Millisecond))
		}
		t.log.Error("new worker exited "+when, fields...)
		t.failNext(sl, fmt.Errorf("new worker %d (slot %d) exited %s: %s", w.info.Pid, sl.index, when, st))
		return
	}
	if t.failsRoll(w) {
		sl.w = nil
		t.log.Error("new worker exited before its generation was accepted", fields...)
		t.exitsBy.StartFailures++
		t.abortRoll(fmt.Errorf("new worker %d (slot %d) exited before its generation was accepted: %s", w.info.Pid, sl.index, st))
		t.schedule() // the slot is refilled in the generation the roll goes back to
		return
	}
	sl.w = nil
	up := !w.readyAt.IsZero() && st.Time.Sub(w.readyAt) >= t.o.minUptime
	if up {
		sl.failures, sl.failingSince = 0, time.Time{}
	} else {
		err := workerExit(w, st)
		if w.notReady != "" {
			err = fmt.Errorf("%s: %w", w.notReady, err)
		}
		t.failed(sl, err)
		if sl.failures == crashLoop && sl.servedGen == w.info.Generation {
			t.log.Warn("a generation that served here now fails to start", append(workerFields(w.info),
				zap.Int("failures", sl.failures), zap.String("hint", "something it loads at start changed since "+
					"(an interpreted app edited in place?): deploy each release in a directory of its own, switched "+
					"with -chdir or a symlink, so that an older generation can still start"))...)
		}
	}
	restart := true
	if h := t.o.hooks.OnExit; h != nil {
		t.runHook(func() { restart = h(w.info, st) })
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

// hookExit tells AfterExit about every exit.
func (t *table) hookExit(w *child, st reap.Status) {
	h := t.o.hooks.AfterExit
	if h == nil {
		return
	}
	e := ExitEvent{Worker: w.info, Status: st, Asked: w.info.State == Stopping || t.stopping, Why: w.why}
	if e.Asked && e.Why == "" {
		e.Why = "stopping"
	}
	t.runHook(func() { h(e) })
}

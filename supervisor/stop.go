package supervisor

import (
	"errors"
	"os"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// scale sets the number of slots.
func (t *table) scale(n int) {
	if n == len(t.slots) || t.stopping {
		return
	}
	t.log.Info("scaling", zap.Int("from", len(t.slots)), zap.Int("to", n))
	t.bindSlots(len(t.slots), n)
	for len(t.slots) < n {
		t.slots = append(t.slots, &slot{index: len(t.slots)})
	}
	for _, sl := range t.slots[n:] {
		if w := sl.next; w != nil {
			sl.next = nil
			t.retire(w, "scaled down")
		}
		if sl.w != nil {
			t.retire(sl.w, "scaled down")
		}
	}
	t.slots = t.slots[:n]
	t.closeSlots(n) // after the stop signals: see WithReusePort
	t.schedule()
	t.advanceRoll()
}

// stop begins a graceful stop: no more restarts or rolls, the stop signal
// to every worker, SIGKILL after timeout (0: only when killAll is called).
func (t *table) stop(timeout time.Duration) {
	if t.stopping {
		return
	}
	t.stopping = true
	t.s.draining.Store(true)
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
	// The trees are listed before any worker is signalled: a worker that
	// exits at once would leave its children to whoever reaps orphans. A
	// worker's tree gets the stop signal once the worker has exited. A
	// worker's cgroup keeps its tree whatever its parents do, and is read
	// at its exit: with one for every worker, /proc is not listed here (all
	// of it: 60–180 ms at 1,000 workers, before the first signal).
	var strays []*stray
	if !t.treesInCgroups() {
		strays = t.findStrays()
	}
	// Every worker is marked stopping (for the hand-over router too) before
	// any is signalled: once signalled, a thousand workers waking up to
	// drain take the cores, and each call to the router then waited its
	// turn (0.7 s for 1,000, interleaved with the signals; 2 ms before).
	var signal []*child
	for w := range t.live {
		if w.info.State != Stopping {
			w.info.State = Stopping
			t.handoverStopping(w)
			w.retiredAt = time.Now()
			w.why = "stopping"
			signal = append(signal, w)
		}
		w.pingBy = time.Time{}
		w.deadline = time.Time{}
		if timeout > 0 {
			w.deadline = time.Now().Add(timeout)
		}
	}
	for _, w := range signal {
		t.signal(w, t.o.stopSignal)
	}
	if timeout > 0 {
		t.stopDeadline = time.Now().Add(timeout)
	}
	t.signalStrays(strays) // the rest of the workers' trees get the stop signal too
}

func (t *table) killAll() {
	if t.delaying {
		t.delayOver(time.Time{}) // no more delay: stop, then kill
	} else if !t.stopping {
		t.stop(0) // so that nothing is restarted
	}
	if !t.killing {
		t.findStrays() // before the workers die and their children move
	}
	for w := range t.live {
		if w.info.State != Stopping {
			t.handoverStopping(w)
		}
		w.info.State = Stopping
		if w.why == "" {
			w.why = "killed"
		}
		w.deadline = time.Time{}
		t.signal(w, syscall.SIGKILL)
	}
	t.killTrees()
}

func (t *table) signal(w *child, sig syscall.Signal) {
	if err := w.proc.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.log.Warn("signal worker", append(workerFields(w.info), zap.Stringer("signal", sig), zap.Error(err))...)
	}
}

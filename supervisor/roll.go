package supervisor

import (
	"fmt"
	"syscall"
	"time"

	"go.uber.org/zap"
)

type roll struct {
	gen     uint64
	started time.Time
	waiters []chan<- error
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
	w.retiredAt = time.Now()
	t.log.Info("retiring worker", append(workerFields(w.info), zap.String("why", why))...)
	t.signal(w, t.o.stopSignal)
	t.capDraining()
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
	t.countRoll(r, "completed", nil)
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
	t.countRoll(r, "failed", err)
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

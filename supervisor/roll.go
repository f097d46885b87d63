package supervisor

import (
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/notify"
)

// RollResult is how a roll ended.
type RollResult string

// The outcomes of a roll.
const (
	// RollCompleted: every slot runs the new generation, which serves.
	RollCompleted RollResult = "completed"
	// RollRolledBack: the new generation failed, and every slot that had
	// taken it went back to the previous one.
	RollRolledBack RollResult = "rolled_back"
	// RollFailed: the new generation failed, and so did the way back:
	// some slots may still run the failed generation.
	RollFailed RollResult = "failed"
)

type roll struct {
	gen     uint64 // the generation the slots are moving to
	from    uint64 // the generation serving when the roll started
	started time.Time
	waiters []chan<- error

	// back is set once the roll to gen failed: the roll now moves every
	// slot to from, and ends with failure.
	back   bool
	failed uint64 // with back: the generation that failed
	err    error  // with back: why

	// accepted is set once the canaries stayed up for the accept window
	// (at once for the way back); acceptAt is when that will be, once
	// every canary is ready.
	accepted bool
	acceptAt time.Time

	// With WithProbe: probing while the probe runs for the canaries,
	// probed once it passed; stopProbe cancels it.
	probing, probed bool
	stopProbe       func()
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

// retire asks w to drain and exit, and kills it at the stop timeout (none
// with a stop timeout of 0).
func (t *table) retire(w *child, why string) {
	if w.info.State == Stopping {
		return
	}
	if _, live := t.live[w]; !live {
		w.info.State = Stopping // it has exited already
		return
	}
	w.info.State = Stopping
	t.handoverStopping(w)
	w.why = why
	w.retiredAt = time.Now()
	w.deadline = time.Time{}
	if t.o.stopTimeout > 0 {
		w.deadline = time.Now().Add(t.o.stopTimeout)
	}
	w.pingBy = time.Time{}
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

// startRoll starts a roll to a new generation. Generation numbers only go
// up: a failed generation's number is never given again.
func (t *table) startRoll(r *roll) {
	t.lastGen = max(t.lastGen, t.gen) + 1
	r.gen, r.from, r.started = t.lastGen, t.gen, time.Now()
	t.setRecipe(r.gen, t.s.pin())
	t.roll = r
	for _, sl := range t.slots {
		sl.vetoed = false // "until the next roll"
	}
	t.log.Info("rolling", zap.Uint64("generation", r.gen), zap.Int("workers", len(t.slots)), zap.Int("surge", t.o.surge))
	t.sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d\nSTATUS=rolling to generation %d", notify.MonotonicUsec(), r.gen))
	t.hookRoll(RollEvent{Generation: r.gen, From: r.from})
	t.schedule() // slots left empty by a veto
	t.advanceRoll()
}

// advanceRoll starts replacements up to the surge and finishes the roll
// once every slot serves the roll's generation.
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
	limit := t.o.surge
	if !r.accepted {
		limit = t.o.canary
	}
	finished := inflight == 0 && r.accepted
	for _, sl := range t.slots {
		if sl.vetoed || sl.next != nil || sl.w != nil && sl.w.info.Generation == r.gen {
			if sl.w != nil && sl.w.info.State != Ready {
				finished = false // a new worker placed directly, not ready yet
			}
			continue
		}
		finished = false
		if sl.w == nil || inflight >= limit {
			continue // an empty slot is filled by schedule, in the roll's generation
		}
		if err := t.spawn(sl, r.gen, &sl.next); err != nil {
			t.abortRoll(fmt.Errorf("starting a new worker for slot %d: %w", sl.index, err))
			return
		}
		inflight++
	}
	if !finished {
		return
	}
	t.roll = nil
	t.gen = r.gen
	t.forget() // the pins of the generations that served before
	took := time.Since(r.started)
	if r.back {
		t.endRoll(r, RollRolledBack, r.err)
		t.log.Error("roll failed; the previous generation keeps serving", zap.Uint64("generation", r.failed),
			zap.Uint64("serving", r.gen), zap.Duration("took", took), zap.Error(r.err))
		t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=roll to generation %d failed: %v", r.failed, r.err))
		replyAll(r.waiters, fmt.Errorf("supervisor: roll to generation %d: %w", r.failed, r.err))
	} else {
		t.endRoll(r, RollCompleted, nil)
		t.log.Info("roll complete", zap.Uint64("generation", r.gen), zap.Duration("took", took))
		t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=%d workers ready, generation %d", len(t.slots), t.gen))
		replyAll(r.waiters, nil)
	}
	t.afterOperation()
}

// endRoll records a roll's outcome and tells the hook.
func (t *table) endRoll(r *roll, res RollResult, err error) {
	gen := r.gen
	if r.back {
		gen = r.failed
	}
	t.lastRollErr = err
	t.countRoll(gen, r.started, res, err)
	t.hookRollEnd(RollEvent{Generation: gen, From: r.from, Result: res, Err: err, Took: time.Since(r.started)})
}

// abortRoll stops the roll: its new workers in flight retire, and every
// slot that took the new generation goes back to the previous one, through
// the same readiness-gated path. If the way back fails too, the roll ends
// with what serves.
func (t *table) abortRoll(err error) {
	r := t.roll
	if r == nil {
		return
	}
	if r.stopProbe != nil {
		r.stopProbe()
	}
	for _, sl := range t.slots {
		if w := sl.next; w != nil {
			sl.next = nil
			t.retire(w, "its roll failed")
		}
	}
	if r.back {
		t.roll = nil
		t.forget()
		err = fmt.Errorf("%w; rolling back to generation %d: %w", r.err, r.gen, err)
		t.endRoll(r, RollFailed, err)
		t.log.Error("roll failed, and so did the rollback", zap.Uint64("generation", r.failed), zap.Error(err))
		t.sdNotify(fmt.Sprintf("READY=1\nSTATUS=roll to generation %d failed: %v", r.failed, err))
		replyAll(r.waiters, fmt.Errorf("supervisor: roll to generation %d: %w", r.failed, err))
		t.afterOperation()
		return
	}
	r.back, r.failed, r.err, r.gen = true, r.gen, err, r.from
	r.accepted = true // the previous generation was
	t.log.Warn("roll failed: rolling back", zap.Uint64("generation", r.failed), zap.Uint64("to", r.gen), zap.Error(err))
	t.advanceRoll()
}

// failNext ends sl's replacement worker, which failed: during a roll, the
// roll stops; for a recycling, the serving worker stays and is recycled
// again after the backoff.
func (t *table) failNext(sl *slot, err error) {
	if w := sl.next; w != nil {
		sl.next = nil
		t.retire(w, "it failed to start")
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

// canaryReady is called when a worker of the roll's generation is ready
// before the generation was accepted: once every such worker is ready,
// the accept window starts from the last of them.
func (t *table) canaryReady() {
	r := t.roll
	var last time.Time
	for _, sl := range t.slots {
		for _, w := range []*child{sl.w, sl.next} {
			if w == nil || w.info.Generation != r.gen {
				continue
			}
			if w.info.State != Ready {
				return
			}
			if w.readyAt.After(last) {
				last = w.readyAt
			}
		}
	}
	r.acceptAt = last.Add(t.o.acceptWindow)
	if t.o.probe != nil && !r.probing && !r.probed {
		t.startProbe(r)
	}
	if t.o.acceptWindow == 0 {
		t.accept()
	}
}

// accept ends the canaries' window: the OnCanary hook may veto, else the
// generation is accepted, the canaries take their slots and the roll goes
// on a surge at a time.
func (t *table) accept() {
	r := t.roll
	if r == nil || r.accepted || r.acceptAt.IsZero() || t.o.probe != nil && !r.probed {
		return // with a probe: once it passed (onProbe)
	}
	var canaries []*slot
	for _, sl := range t.slots {
		if w := sl.next; w != nil && w.info.Generation == r.gen {
			canaries = append(canaries, sl)
		}
	}
	if h := t.o.hooks.OnCanary; h != nil {
		for _, sl := range canaries {
			var err error
			t.runHook(func() { err = h(sl.next.info) })
			if err != nil {
				t.abortRoll(fmt.Errorf("canary %d (slot %d) vetoed: %w", sl.next.info.Pid, sl.index, err))
				return
			}
		}
	}
	r.accepted = true
	t.log.Info("generation accepted", zap.Uint64("generation", r.gen), zap.Int("canaries", len(canaries)),
		zap.Duration("window", t.o.acceptWindow))
	for _, sl := range canaries {
		t.takeOver(sl)
	}
	t.advanceRoll()
}

// takeOver makes sl's ready replacement its worker and retires the old one.
func (t *table) takeOver(sl *slot) {
	old := sl.w
	sl.w, sl.next = sl.next, nil
	if old != nil {
		t.retire(old, "replaced by a new generation")
	}
}

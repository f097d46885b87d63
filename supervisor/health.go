package supervisor

import (
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/internal/acceptq"
	"github.com/handoff-dev/handoff/internal/notify"
	"github.com/handoff-dev/handoff/worker"
	"go.uber.org/zap"
)

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
	t.countReady(w)
	t.handoverReady(w)
	if sl := t.slotOf(w); sl != nil {
		sl.servedGen = w.info.Generation
	}
	if t.o.watchdog > 0 && w.pingBy.IsZero() {
		// Armed now: a slow start is the ready timeout's business.
		w.pingBy = w.readyAt.Add(t.o.watchdog)
	}
	t.log.Info("worker ready", append(workerFields(w.info),
		zap.Duration("after", w.readyAt.Sub(w.info.Started)))...)
	if h := t.o.hooks.OnReady; h != nil {
		t.runHook(func() { h(w.info) })
	}
	if r := t.roll; r != nil && !r.accepted && w.info.Generation == r.gen && t.slotOf(w) != nil {
		// A canary: it serves beside the worker it replaces until its
		// generation is accepted.
		t.canaryReady()
		t.announceReady()
		return
	}
	if sl := t.slotOf(w); sl != nil && sl.next == w {
		t.takeOver(sl)
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

// watchdogFire signals a worker that stopped pinging (or asked for it),
// and kills it after the grace period; it is then replaced.
func (t *table) watchdogFire(w *child, why string) {
	w.pingBy = time.Time{}
	if w.hung || w.info.State == Stopping {
		return
	}
	w.hung = true
	w.deadline = time.Now().Add(t.o.watchdogGrace)
	t.log.Error("watchdog: worker "+why, append(workerFields(w.info),
		zap.Stringer("signal", t.o.watchdogSignal), zap.Duration("kill_after", t.o.watchdogGrace))...)
	t.signal(w, t.o.watchdogSignal)
}

// recycle replaces w, which reached its maximum lifetime, through the same
// readiness-gated path as a roll.
func (t *table) recycle(w *child) {
	sl := t.slotOf(w)
	if sl == nil || t.stopping {
		return
	}
	if sl.w != w || sl.next != nil || t.roll != nil || w.info.State != Ready {
		// A replacement whose lifetime ran out before it took the slot
		// is recycled once it serves.
		w.expireAt = time.Now().Add(t.o.backoffMin) // being replaced already, or not yet serving
		return
	}
	t.log.Info("recycling worker at its maximum lifetime", workerFields(w.info)...)
	if err := t.spawn(sl, w.info.Generation, &sl.next); err != nil {
		t.failNext(sl, err)
		return
	}
	w.recycled = true
}

func (t *table) onNotify(m notifyMsg) {
	w := t.byPid[m.Pid]
	if w == nil && t.o.notifyAll {
		if pid, ok := notify.DescendantOf(m.Pid, func(pid int) bool { return t.byPid[pid] != nil }); ok {
			w = t.byPid[pid]
		}
	}
	if w == nil {
		t.foreign++
		t.log.Debug("notify message from a process that is not a worker", zap.Int("pid", m.Pid))
		return
	}
	w.notified = true
	if m.Status != "" {
		w.status = m.Status
	}
	if m.Watchdog && t.o.watchdog > 0 && !w.hung && w.info.State == Ready {
		w.pingBy = time.Now().Add(t.o.watchdog)
	}
	if m.WatchdogTrigger {
		t.watchdogFire(w, "asked for the watchdog (WATCHDOG=trigger)")
	}
	if m.Ready && t.o.readiness.mode == readyNotify {
		t.ready(w)
	}
}

// sdNotify tells the service manager that started the supervisor, if any.
func (t *table) sdNotify(state string) {
	if _, err := worker.Notify(state); err != nil {
		t.log.Warn("notifying the service manager", zap.Error(err))
	}
}

// notReady says why w, not ready at its ready timeout, is killed (what the
// start failures it makes say when the supervisor gives up), and, for a
// worker that serves or never spoke to the notify socket, what to do.
func (t *table) notReady(w *child) (why, hint string) {
	why = fmt.Sprintf("not ready within %v", t.o.readyTimeout)
	var what string
	switch {
	case t.acceptedConns(w):
		what = "was accepting connections but never sent READY=1"
	case !w.notified:
		what = "sent no notify message at all, no READY=1"
	default:
		return why, ""
	}
	return why + ": it " + what + " (a server that does not speak sd_notify needs -ready start, with a -probe)",
		"the worker " + what + "; a server that does not speak sd_notify (uvicorn, " +
			"most servers) never will: use -ready start (or delay:D), with a -probe to check that it serves " +
			"(WithReadiness(ReadyOnStart()), WithProbe)"
}

// acceptedConns reports whether w's process tree holds a connection
// accepted on one of the sockets.
func (t *table) acceptedConns(w *child) bool {
	ok, err := acceptq.TreeAccepted(w.info.Pid, t.socksFor(w.info.Slot))
	if err != nil {
		t.log.Debug("looking for the connections a worker accepted", zap.Error(err))
	}
	return ok
}

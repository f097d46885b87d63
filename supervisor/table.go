package supervisor

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/connpass"
	"github.com/handoff-dev/handoff/internal/janitor"
	"github.com/handoff-dev/handoff/internal/proctree"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
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
	ports   slotSockets        // WithReusePort: each slot's own (reuseport.go)
	devnull *os.File
	// liveness is a pipe whose read end every worker holds; only this
	// process holds the write end, so workers read EOF once it is gone.
	liveR, liveW *os.File
	notify       *notifySocket
	notes        chan notifyMsg
	sigs         chan os.Signal   // nil without WithSignals
	carried      []syscall.Signal // received before an exec, handled first after it

	gen     uint64            // the generation serving: new workers' outside a roll
	recipes map[uint64]recipe // each live generation's command, pinned when it started
	lastGen uint64            // the highest generation number given so far
	slots   []*slot
	live    map[*child]struct{} // every started process not yet reaped
	byPid   map[int]*child

	exits      chan exit
	preflights chan error
	probes     chan probeResult
	quit       chan struct{} // closed when the loop has ended
	watchers   sync.WaitGroup
	bg         sync.WaitGroup // notify reader, preflight

	roll     *roll // the roll in progress
	nextRoll *roll // requests that came during it, coalesced
	upgrade  *upgrade

	stopping       bool
	stopDeadline   time.Time        // SIGKILL for the workers' trees; zero: only on kill
	killing        bool             // the stop turned to SIGKILL
	strays         *proctree.Strays // tree.go
	groups         map[int]bool     // process groups of workers seen during the stop
	pace           sweepPace        // the sweeps of the stop (tree.go)
	unpublished    bool             // an event changed the table since the last publish
	publishedAt    time.Time        // when publish last ran
	delaying       bool             // in the shutdown delay (WithShutdownDelay)
	delayUntil     time.Time        // when it ends
	delayTimeout   time.Duration
	janitor        *janitor.Janitor
	cgBase         string          // this supervisor's cgroup for its workers; "": none (cgroup.go)
	cgLeft         map[string]bool // cgroups of exited workers, until empty and removed
	cgN            int             // cgroups made
	janitorExits   chan *reap.Process
	stopSignals    int // SIGTERM/SIGINT received
	announcedReady bool
	wake           *time.Timer

	fatal       error // Run gives up with this (WithMaxStartFailures)
	lastRollErr error
	restarts    int
	exitsBy     exitCounts
	foreign     int // notify messages from processes that are not workers

	count           counters         // metrics.go
	queues          queueWatch       // queue.go
	lastRoll        *LastRoll        // nil before the first roll ends
	metrics, health *httpEndpoint    // WithMetrics, WithHealth (metrics_server.go)
	router          *connpass.Router // hand-over; nil: off (handover.go)
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
	lastExit  *LastExit
	// failingSince is when the start failures in a row began (zero: none);
	// servedGen, the generation of the last worker that was ready here.
	failingSince time.Time
	servedGen    uint64
}

type child struct {
	info     WorkerInfo
	proc     *reap.Process
	readyAt  time.Time // zero until ready
	deadline time.Time // Starting: ready (delay) or timeout; Stopping or hung: SIGKILL
	pingBy   time.Time // the watchdog's next ping is due by then; zero: off
	expireAt time.Time // recycle then (WithMaxLifetime); zero: never
	hung     bool      // the watchdog signalled it
	hurried  bool      // told to end its drain now (draining.go)
	status   string    // the last STATUS= it sent
	notified bool      // it sent a notify message, any
	notReady string    // why it was killed at its ready timeout ("" if it was not)
	cgroup   string    // its cgroup's directory; "": none (cgroup.go)

	retiredAt time.Time // when it was asked to exit; zero if not
	recycled  bool      // replaced at its maximum lifetime
	why       string    // why it was asked to exit
}

type exit struct {
	w  *child
	st reap.Status
}

func (s *Supervisor) newTable() (_ *table, err error) {
	t := &table{
		s:          s,
		o:          &s.o,
		log:        s.log,
		gen:        1,
		lastGen:    1,
		recipes:    make(map[uint64]recipe),
		live:       make(map[*child]struct{}),
		byPid:      make(map[int]*child),
		exits:      make(chan exit),
		notes:      make(chan notifyMsg),
		preflights: make(chan error),
		probes:     make(chan probeResult),
		quit:       make(chan struct{}),
		reaperGone: make(chan struct{}),
		wake:       time.NewTimer(time.Hour),
		count:      newCounters(),
		strays:     proctree.NewStrays(),
		groups:     make(map[int]bool),
		cgLeft:     make(map[string]bool),

		janitorExits: make(chan *reap.Process),
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
	// Before resume, whose workers (kept across an upgrade in place) find
	// their cgroups under this pid's.
	if err := t.openCgroups(); err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	t.openRouter() // before resume, which hands it the workers' pairs
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
	t.initQueues()
	t.publish() // before the metrics endpoint answers: the inherited counts, never zeros
	if err := t.openEndpoints(st); err != nil {
		return nil, err
	}
	t.startJanitor()
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		err := t.notify.Serve(func(m notifyMsg) {
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
		opts, perSlot := t.listenOptions(a)
		sock, err := listener.Listen(a, opts...)
		if err != nil {
			return fmt.Errorf("supervisor: %w", err)
		}
		t.owned = append(t.owned, sock)
		var bind listener.Addr // shared
		if perSlot {
			bind = boundAddr(a, sock)
		}
		t.ports.bind = append(t.ports.bind, bind)
		t.log.Info("listening", zap.String("name", sock.Name()), zap.Stringer("addr", sock.Addr()))
	}
	t.socks = append(slices.Clone(t.owned), t.o.sockets...)
	for range t.o.sockets {
		t.ports.bind = append(t.ports.bind, listener.Addr{}) // shared: not ours to bind
	}
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
	t.bindSlots(0, len(t.slots))
	t.logMigrate()
	return nil
}

func (t *table) newReaper() (*reap.Reaper, error) {
	opts := []reap.Option{reap.WithLogger(t.log)}
	if t.subreaping() {
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
	t.stopEndpoints()
	if t.reaper != nil {
		t.stopJanitor()
	}
	if r := t.roll; r != nil && r.stopProbe != nil {
		r.stopProbe()
	}
	t.bg.Wait()
	t.watchers.Wait()
	t.strays.Close()
	t.closeCgroups()
	t.wake.Stop()
	if t.sigs != nil {
		signal.Stop(t.sigs)
	}
	if t.reaper != nil {
		t.reaper.Close()
	}
	t.closeRecipes()
	t.closeRouter()
	for _, f := range []*os.File{t.devnull, t.liveR, t.liveW} {
		if f != nil {
			f.Close()
		}
	}
	t.closeSlots(0)
	for _, sock := range t.owned {
		sock.Close()
	}
	// The socket files of the addresses this supervisor was told to bind
	// (never those it was given) go with it: every worker is gone.
	for _, a := range t.s.addrs {
		if err := listener.Unlink(a); err != nil {
			t.log.Warn("removing a socket file at the stop", zap.Error(err))
		}
	}
	t.closeEndpoints()
}

// loop is the run goroutine: it owns the table until every worker is gone.
func (t *table) loop(ctx context.Context) error {
	s := t.s
	done, stopC, killC := ctx.Done(), s.stopC, s.killC

	t.log.Info("starting workers", zap.Int("workers", len(t.slots)), zap.String("command", s.cmd.Path),
		zap.Stringer("readiness", t.o.readiness), zap.String("notify_socket", t.notify.Name()))
	// Running, and /readyz, say ready from here: the table is up, and the
	// workers of a resumed table serve already.
	t.publish()
	close(s.running)
	t.serveEndpoints() // health: once the workers are started or resumed
	t.schedule()
	t.afterOperation() // a roll requested before an upgrade
	ping := false      // the last event was a watchdog ping: Stats is as it was
	for !t.stopping || len(t.live) > 0 || t.strays.Len() > 0 {
		for t.sigs != nil && len(t.carried) > 0 { // from before an exec, or kept by a failed one
			sig := t.carried[0]
			t.carried = t.carried[1:]
			t.onSignal(sig)
			ping = false
		}
		if !ping {
			t.unpublished = true
		}
		if t.unpublished && time.Since(t.publishedAt) >= publishEvery {
			t.publish()
		}
		t.rearm()
		ping = false
		select {
		case e := <-t.exits:
			t.onExit(e)
		case s := <-t.strays.Exits():
			t.onStrayExit(s)
		case p := <-t.janitorExits:
			t.onJanitorExit(p)
		case m := <-t.notes:
			ping = t.byPid[m.Pid] != nil && m == notifyMsg{Pid: m.Pid, Watchdog: true}
			t.onNotify(m)
		case r := <-t.preflights:
			t.onPreflight(r)
		case p := <-t.probes:
			t.onProbe(p)
		case sig := <-t.sigs:
			t.onSignal(sig)
		case f := <-s.reqs:
			f(t)
		case <-t.wake.C:
			t.onTimer()
		case <-done:
			done = nil
			t.log.Info("context done: stopping", zap.Duration("timeout", t.o.stopTimeout))
			t.requestStop(t.o.stopTimeout)
		case <-stopC:
			stopC = nil
			t.log.Info("stopping")
			t.requestStop(0)
		case <-killC:
			killC = nil
			t.killAll()
		}
	}
	t.publish()
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
	if r := t.roll; r != nil && !r.accepted && (t.o.probe == nil || r.probed) {
		earliest(r.acceptAt)
	}
	if t.stopping && t.strays.Len() > 0 {
		earliest(t.stopDeadline)
	}
	earliest(t.nextSweep())
	if t.unpublished {
		earliest(t.publishedAt.Add(publishEvery))
	}
	if t.delaying {
		earliest(t.delayUntil)
	}
	if !t.stopping {
		earliest(t.queues.Next())
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

// onTimer acts on every deadline that has passed. Notify messages already
// received count first: when both are ready the loop's select may take the
// timer, and a WATCHDOG=1 or READY=1 waiting in t.notes would lose to the
// supervisor's own delay.
func (t *table) onTimer() {
	for pending := true; pending; {
		select {
		case m := <-t.notes:
			t.onNotify(m)
		default:
			pending = false
		}
	}
	now := time.Now()
	t.watchQueues(now)
	if r := t.roll; r != nil && !r.accepted && !r.acceptAt.IsZero() && !now.Before(r.acceptAt) {
		t.accept()
	}
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
			why, hint := t.notReady(w)
			w.notReady = why
			fields := append(workerFields(w.info), zap.Duration("ready_timeout", t.o.readyTimeout))
			if hint != "" {
				fields = append(fields, zap.String("hint", hint))
			}
			t.log.Error("worker not ready in time: killing", fields...)
			err := fmt.Errorf("new worker %d (slot %d) %s", w.info.Pid, w.info.Slot, w.notReady)
			if sl := t.slotOf(w); sl != nil && sl.next == w {
				t.failNext(sl, err)
				continue
			}
			if t.failsRoll(w) {
				t.slotOf(w).w = nil // refilled in the generation the roll goes back to
				t.retire(w, "its roll failed")
				t.exitsBy.StartFailures++
				t.abortRoll(err)
				continue
			}
			t.signal(w, syscall.SIGKILL) // its exit counts as a start failure
		}
	}
	t.treeDeadline(now)
	t.delayOver(now)
	t.schedule()
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

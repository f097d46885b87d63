package supervisor

import (
	"cmp"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/listener"
)

// Stats is a snapshot of the supervisor: its workers, slots and sockets,
// and its counters. Supervisor.Stats returns it; the status of the handoff
// command and package metrics are both built from it, so they always agree.
//
// The counters (Starts to SpawnToReady) count since the first program of
// this process started: an in-place upgrade hands them on, so they never go
// backwards while the pid lives.
type Stats struct {
	// Generation is the generation serving; Rolling tells whether a roll
	// to the next one is under way.
	Generation uint64
	Rolling    bool
	// Workers lists the workers in slots, by slot: each serving worker and,
	// during a roll or a recycling, the new worker that will replace it.
	// Retiring lists, by pid, the workers asked to exit that have not yet
	// and hold no slot any more.
	Workers  []WorkerInfo
	Retiring []WorkerInfo
	// Slots are the N places the workers run in, by index.
	Slots []SlotInfo
	// Sockets are the listening sockets passed to the workers, with their
	// accept queues as the kernel reports them when Stats is called.
	Sockets []SocketQueue
	// LastRoll is how the last roll ended; nil before one did.
	LastRoll *LastRoll
	// NotifySocket is the workers' NOTIFY_SOCKET; MetricsAddr and
	// HealthAddr are the addresses WithMetrics and WithHealth serve on (""
	// without them).
	NotifySocket, MetricsAddr, HealthAddr string

	// Starts counts the worker processes started. Restarts counts the
	// restarts after exits nobody asked for. StartFailures counts the
	// workers that failed to start: spawn errors, exits before the minimum
	// uptime (they drive the backoff) and new workers that failed a roll.
	Starts, Restarts, StartFailures uint64
	// Exits counts worker exits by why they happened. Retired: the
	// supervisor asked (a roll, a scale-down, a stop). Watchdog: the
	// watchdog signalled the worker. Recycled: it reached its maximum
	// lifetime. The others are exits nobody asked for: Clean with status 0,
	// Failed with another status, Signal killed by a signal.
	Exits struct{ Clean, Failed, Signal, Watchdog, Recycled, Retired uint64 }
	// Rolls counts rolls by how they ended; RolledBack counts the rolls
	// whose new generation was replaced by the previous one again.
	Rolls struct{ Completed, Failed, RolledBack uint64 }
	// Upgrades counts in-place upgrades; a completed one is counted by the
	// new program once it has taken over.
	Upgrades struct{ Completed, Failed uint64 }
	// NotifyDropped counts the notify datagrams dropped, by reason.
	NotifyDropped NotifyDrops
	// RollDuration: from the start of a roll to its end, completed or not.
	// DrainDuration: from a worker being asked to exit to its exit.
	// SpawnToReady: from a worker's start to its being ready.
	RollDuration, DrainDuration, SpawnToReady Histogram
	// Handover counts the connections handed from worker to worker
	// (WithHandover); zero with it off.
	Handover HandoverStats
}

// GenerationsAlive counts the distinct generations of the worker
// processes alive: those in Workers and Retiring.
func (st Stats) GenerationsAlive() int {
	gens := make(map[uint64]bool)
	for _, w := range slices.Concat(st.Workers, st.Retiring) {
		gens[w.Generation] = true
	}
	return len(gens)
}

// State is where a worker is in its life.
type State int

// The states of a worker.
const (
	// Starting: the process exists but is not ready yet.
	Starting State = iota
	// Ready: the worker is serving.
	Ready
	// Stopping: the worker was asked to exit (stop signal sent).
	Stopping
)

func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Stopping:
		return "stopping"
	}
	return "unknown"
}

// WorkerInfo describes one worker process.
type WorkerInfo struct {
	Slot       int
	Pid        int
	Generation uint64
	State      State
	Started    time.Time
	// Restarts counts how many times this worker's slot was restarted
	// after an exit the supervisor did not ask for.
	Restarts int
	// Status is the last STATUS= the worker sent to its notify socket.
	Status string
	// ReadyAt is when it became ready and RetiredAt when it was asked to
	// exit (zero: not yet). Filled in by Stats only.
	ReadyAt, RetiredAt time.Time
}

// SlotInfo describes one of the N places a worker runs in.
type SlotInfo struct {
	Index int
	// Failures counts the start failures in a row; NextRetry, when the
	// slot is empty and waits for its backoff, is when it starts again.
	Failures  int
	NextRetry time.Time
	Restarts  int
	// Vetoed: the OnExit hook refused a restart; the slot stays empty.
	Vetoed bool
	// LastExit is the last exit of a worker of this slot that was not
	// asked for (a retirement or recycling); nil if none.
	LastExit *LastExit
	// FailingSince is when the start failures in a row began; zero
	// without one. CrashLooping: there have been 3 or more.
	FailingSince time.Time
	CrashLooping bool
}

// LastExit is the last exit of a slot's worker that the supervisor did not
// ask for, or that the watchdog caused: the one a person looks for.
type LastExit struct {
	Pid        int
	Generation uint64
	// Status is the exit status ("exit status 1", "signal: killed");
	// Reason names the Stats.Exits counter it went to, in lower case
	// ("failed", "signal", "watchdog"…).
	Status, Reason string
	Time           time.Time
}

// LastRoll is how the last roll ended.
type LastRoll struct {
	// Generation is the generation the roll was to.
	Generation uint64
	// Result says how it ended; Error says why when it did not complete.
	Result  RollResult
	Error   string
	Started time.Time
	Took    time.Duration
}

// Stats returns a snapshot of the supervisor: the table and its counters,
// and the accept queues as the kernel reports them now. It waits for the
// event the run goroutine is handling (and a hook it runs) to end, so it
// shows the outcome of every event before the call. From a hook it answers
// at once, with the table as the hook sees it. Before Run it returns the
// zero Stats; after Run, the last one. The slices are the caller's.
func (s *Supervisor) Stats() Stats {
	if s.inHook() {
		s.hooked.publish() // set before the hook's goroutine began; the run goroutine waits for it
	} else {
		s.call(func(t *table) { t.publish() })
	}
	return s.LastStats()
}

// LastStats returns the Stats the run goroutine published last (after an
// event, at most publishEvery (50ms) after it in a burst of events), with
// the accept queues as the kernel reports them now, without waiting for
// the run goroutine: for monitoring
// (package metrics), which must answer while the run goroutine is busy, as
// during an upgrade's exec, when it waits for the requests its endpoints
// took to be answered.
func (s *Supervisor) LastStats() Stats {
	p := s.pub.Load()
	if p == nil {
		return Stats{}
	}
	st := p.st
	st.Workers, st.Retiring = cloneInfos(st.Workers), cloneInfos(st.Retiring)
	st.Slots = slices.Clone(st.Slots)
	for i, sl := range st.Slots {
		if sl.LastExit != nil {
			e := *sl.LastExit
			st.Slots[i].LastExit = &e
		}
	}
	if st.LastRoll != nil {
		lr := *st.LastRoll
		st.LastRoll = &lr
	}
	st.RollDuration, st.DrainDuration, st.SpawnToReady = st.RollDuration.clone(), st.DrainDuration.clone(), st.SpawnToReady.clone()
	st.Sockets = slices.Clone(st.Sockets)
	sample := s.o.metrics.sample
	if sample == nil {
		sample = sampleQueue
	}
	for i, sock := range p.socks {
		if i < len(st.Sockets) {
			q := sample(sock)
			q.NotServed, q.NotServedSince = st.Sockets[i].NotServed, st.Sockets[i].NotServedSince
			st.Sockets[i] = q
		}
	}
	return st
}

func cloneInfos(ws []WorkerInfo) []WorkerInfo {
	if ws == nil {
		return nil
	}
	return slices.Clone(ws)
}

// published is what the run goroutine last published for Stats, which
// reads it without waiting for the loop. It is never changed once stored.
type published struct {
	st    Stats
	socks []*listener.Socket
}

// publishEvery paces publish: the snapshot copies every worker, and events
// come in bursts (the readiness of N workers starting at once, the exits of
// a stop: a snapshot per event was O(N²), 1,000 workers' exits took
// seconds of it, 100 workers' start 0.3 ms of the supervisor's CPU per
// worker). The first event after a quiet spell publishes at once; the rest
// of a burst at most every publishEvery, and its last one within it.
// LastStats lags the table by at most this; Stats never does (it publishes).
const publishEvery = 50 * time.Millisecond

// publish stores the table's snapshot for Supervisor.Stats. The run loop
// calls it after every event that may have changed it (all but a worker's
// watchdog ping; at most every publishEvery), and Stats called from a
// hook (see runHook); a caller whose Roll or Scale has
// returned waits for the loop's next select, which comes after it (see
// await), so that it sees its outcome in Stats.
func (t *table) publish() {
	now := time.Now()
	t.unpublished, t.publishedAt = false, now
	st := Stats{
		Generation:    t.gen,
		Rolling:       t.roll != nil,
		NotifySocket:  t.notify.Name(),
		MetricsAddr:   t.metrics.addr(),
		HealthAddr:    t.health.addr(),
		Sockets:       t.queues.published(),
		Starts:        t.count.Starts,
		Restarts:      uint64(t.restarts),
		StartFailures: uint64(t.exitsBy.StartFailures),
		Exits:         t.count.Exits,
		Rolls:         t.count.Rolls,
		Upgrades:      t.count.Upgrades,
		RollDuration:  t.count.RollDuration.clone(),
		DrainDuration: t.count.DrainDuration.clone(),
		SpawnToReady:  t.count.SpawnToReady.clone(),
		Handover:      t.handoverStats(),
	}
	st.NotifyDropped = t.totals().Notify
	st.Workers, st.Slots = make([]WorkerInfo, 0, len(t.slots)), make([]SlotInfo, 0, len(t.slots))
	if t.lastRoll != nil {
		lr := *t.lastRoll
		st.LastRoll = &lr
	}
	for _, sl := range t.slots {
		for _, w := range []*child{sl.w, sl.next} {
			if w != nil {
				st.Workers = append(st.Workers, w.infoNow())
			}
		}
		si := SlotInfo{Index: sl.index, Failures: sl.failures, Restarts: sl.restarts, Vetoed: sl.vetoed,
			FailingSince: sl.failingSince, CrashLooping: sl.failures >= crashLoop}
		if sl.w == nil && !sl.vetoed && !t.stopping && now.Before(sl.notBefore) {
			si.NextRetry = sl.notBefore
		}
		if sl.lastExit != nil {
			e := *sl.lastExit
			si.LastExit = &e
		}
		st.Slots = append(st.Slots, si)
	}
	for w := range t.live {
		if t.slotOf(w) == nil {
			st.Retiring = append(st.Retiring, w.infoNow())
		}
	}
	slices.SortFunc(st.Retiring, func(a, b WorkerInfo) int { return cmp.Compare(a.Pid, b.Pid) })
	t.s.pub.Store(&published{st: st, socks: t.socks})
	t.s.nPub.Add(1)
}

// infoNow is w's WorkerInfo with the fields only Stats fills.
func (w *child) infoNow() WorkerInfo {
	info := w.info
	info.Status, info.ReadyAt, info.RetiredAt = w.status, w.readyAt, w.retiredAt
	return info
}

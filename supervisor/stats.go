package supervisor

import (
	"cmp"
	"slices"
	"time"
)

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
}

// ExitCounts counts worker exits by cause.
type ExitCounts struct {
	// Clean: exit status 0. Failed: a non-zero exit status. Signaled:
	// killed by a signal.
	Clean, Failed, Signaled int
	// StartFailures counts exits (and spawn errors) before the worker had
	// been up for the minimum uptime; they drive the backoff.
	StartFailures int
}

// Stats is a snapshot of the worker table.
type Stats struct {
	// Workers lists the workers in slots, by slot: each serving worker and,
	// during a roll, the new worker that will replace it.
	Workers []WorkerInfo
	// Retiring counts workers that were asked to exit and have not yet.
	Retiring int
	// Generation is the generation serving; Rolling tells whether a roll
	// to the next one is under way, and LastRollError why the last roll
	// failed ("" if it did not).
	Generation    uint64
	Rolling       bool
	LastRollError string
	// Restarts counts restarts after exits the supervisor did not ask for.
	Restarts int
	Exits    ExitCounts
	// NotifySocket is the workers' NOTIFY_SOCKET. ForeignNotify counts
	// messages dropped because their sender was not a worker (or, with
	// WithNotifyAccessAll, a worker's descendant); NotifyDropped counts the
	// ones dropped as malformed, oversized or without credentials, and the
	// file descriptors that came with messages and were closed.
	NotifySocket  string
	ForeignNotify int
	NotifyDropped NotifyDrops
	// WatchdogKills counts workers the watchdog signalled; Recycled, the
	// ones replaced at their maximum lifetime.
	WatchdogKills int
	Recycled      int

	// RetiringWorkers lists the workers asked to exit that have not yet,
	// with RetiredAt set; Slots, every slot; Sockets, the listening
	// sockets with their accept queues as last sampled by the not-served
	// check (Metrics samples them afresh); LastRoll, how the last roll
	// ended (nil before one did).
	RetiringWorkers []WorkerInfo
	Slots           []SlotInfo
	Sockets         []SocketQueue
	LastRoll        *LastRoll
	// MetricsAddr is the address WithMetrics serves on; "" without it.
	MetricsAddr string
	// HealthAddr is the address WithHealth serves on; "" without it.
	HealthAddr string
}

// infoNow is w's WorkerInfo with the fields only Stats fills.
func (w *child) infoNow() WorkerInfo {
	info := w.info
	info.Status, info.ReadyAt, info.RetiredAt = w.status, w.readyAt, w.retiredAt
	return info
}

// moreStats adds the slots, sockets and last roll to st.
func (t *table) moreStats(st *Stats) {
	slices.SortFunc(st.RetiringWorkers, func(a, b WorkerInfo) int { return cmp.Compare(a.Pid, b.Pid) })
	now := time.Now()
	for _, sl := range t.slots {
		si := SlotInfo{Index: sl.index, Failures: sl.failures, Restarts: sl.restarts, Vetoed: sl.vetoed, LastExit: sl.lastExit}
		if sl.w == nil && !sl.vetoed && !t.stopping && now.Before(sl.notBefore) {
			si.NextRetry = sl.notBefore
		}
		st.Slots = append(st.Slots, si)
	}
	st.Sockets = t.queues.published()
	for i, sock := range t.socks {
		q := t.sampleQueue(sock)
		st.Sockets[i].Known, st.Sockets[i].Len, st.Sockets[i].Max = q.Known, q.Len, q.Max
	}
	st.LastRoll = t.lastRoll
	st.MetricsAddr, st.HealthAddr = t.metrics.addr(), t.health.addr()
}

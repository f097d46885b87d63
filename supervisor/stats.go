package supervisor

import "time"

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
	// LastRoll is how the last roll ended ("" before the first one).
	LastRoll RollResult
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
	NotifyDropped notifyDrops
	// WatchdogKills counts workers the watchdog signalled; Recycled, the
	// ones replaced at their maximum lifetime.
	WatchdogKills int
	Recycled      int
}

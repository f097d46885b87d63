package supervisor

import (
	"net/http"
	"slices"
	"time"

	"github.com/handoff-dev/handoff/internal/histogram"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
)

// Histogram is a distribution of durations in seconds. Counts has one
// entry per bucket, not cumulative: Counts[i] counts the observations v
// with Bounds[i-1] < v <= Bounds[i], and the last entry, one more than
// Bounds, those above the last bound.
type Histogram struct {
	Bounds []float64
	Counts []uint64
	Sum    float64
	Count  uint64
}

// newHistogram is an empty histogram of durations (package
// internal/histogram has the buckets and the arithmetic).
func newHistogram() Histogram {
	b := histogram.DurationBounds()
	return Histogram{Bounds: b, Counts: make([]uint64, len(b)+1)}
}

func (h *Histogram) observe(d time.Duration) {
	if h.Counts == nil {
		*h = newHistogram()
	}
	h.Sum += histogram.Observe(h.Bounds, h.Counts, d.Seconds())
	h.Count++
}

// merge adds o, a histogram an earlier program kept, possibly with other
// bounds; one this program did not write is ignored.
func (h *Histogram) merge(o Histogram) {
	if h.Counts == nil {
		*h = newHistogram()
	}
	if histogram.Merge(h.Bounds, h.Counts, o.Bounds, o.Counts) {
		h.Sum += o.Sum
		h.Count += o.Count
	}
}

func (h Histogram) clone() Histogram {
	h.Bounds, h.Counts = slices.Clone(h.Bounds), slices.Clone(h.Counts)
	return h
}

// counters are the table's counts that outlive a program: they travel in
// the upgrade state, as JSON (so the field names are the format). Only the
// run goroutine touches them. Stats shows them (exitCounts and restarts
// are in the state beside them).
type counters struct {
	Starts   uint64
	Exits    exitReasons
	Rolls    rollResults
	Upgrades upgradeResults
	// Notify holds the drops counted by earlier programs; this program's
	// notify socket counts its own.
	Notify NotifyDrops

	RollDuration, DrainDuration, SpawnToReady Histogram
}

// The types of Stats' fields of the same names.
type (
	exitReasons    = struct{ Clean, Failed, Signal, Watchdog, Recycled, Retired uint64 }
	rollResults    = struct{ Completed, Failed, RolledBack uint64 }
	upgradeResults = struct{ Completed, Failed uint64 }
)

// exitCounts is the count of the upgrade state's Exits: it once counted
// the exits by status too, now in counters.Exits only.
type exitCounts struct {
	StartFailures int
}

func newCounters() counters {
	return counters{RollDuration: newHistogram(), DrainDuration: newHistogram(), SpawnToReady: newHistogram()}
}

// inherit adds the counts of an earlier program.
func (c *counters) inherit(o *counters) {
	if o == nil {
		return
	}
	c.Starts += o.Starts
	c.Exits.Clean += o.Exits.Clean
	c.Exits.Failed += o.Exits.Failed
	c.Exits.Signal += o.Exits.Signal
	c.Exits.Watchdog += o.Exits.Watchdog
	c.Exits.Recycled += o.Exits.Recycled
	c.Exits.Retired += o.Exits.Retired
	c.Rolls.Completed += o.Rolls.Completed
	c.Rolls.Failed += o.Rolls.Failed
	c.Rolls.RolledBack += o.Rolls.RolledBack
	c.Upgrades.Completed += o.Upgrades.Completed
	c.Upgrades.Failed += o.Upgrades.Failed
	c.Notify.Foreign += o.Notify.Foreign
	c.Notify.NoCredentials += o.Notify.NoCredentials
	c.Notify.Oversized += o.Notify.Oversized
	c.Notify.Malformed += o.Notify.Malformed
	c.Notify.FdsClosed += o.Notify.FdsClosed
	c.Notify.ReadErrors += o.Notify.ReadErrors
	c.RollDuration.merge(o.RollDuration)
	c.DrainDuration.merge(o.DrainDuration)
	c.SpawnToReady.merge(o.SpawnToReady)
}

// The event points call these, one line each.

func (t *table) countStart() { t.count.Starts++ }

func (t *table) countReady(w *child) { t.count.SpawnToReady.observe(w.readyAt.Sub(w.info.Started)) }

// countExit counts w's exit; asked tells whether the supervisor asked for it.
func (t *table) countExit(w *child, st reap.Status, asked bool) {
	c := &t.count
	reason := exitReason(w, st, asked)
	switch reason {
	case "watchdog":
		c.Exits.Watchdog++
	case "recycled":
		c.Exits.Recycled++
	case "retired":
		c.Exits.Retired++
	case "signal":
		c.Exits.Signal++
	case "clean":
		c.Exits.Clean++
	default:
		c.Exits.Failed++
	}
	if !w.retiredAt.IsZero() {
		c.DrainDuration.observe(st.Time.Sub(w.retiredAt))
	}
	if i := w.info.Slot; i < len(t.slots) && reason != "retired" && reason != "recycled" {
		t.slots[i].lastExit = &LastExit{Pid: w.info.Pid, Generation: w.info.Generation,
			Status: st.String(), Reason: reason, Time: st.Time}
	}
}

// exitReason is the reason label of w's exit.
func exitReason(w *child, st reap.Status, asked bool) string {
	switch {
	case w.hung:
		return "watchdog"
	case w.recycled:
		return "recycled"
	case asked:
		return "retired"
	case st.Signal != 0:
		return "signal"
	case st.Code == 0:
		return "clean"
	}
	return "failed"
}

// countRoll counts a roll to gen that ended with result (RollCompleted, RollRolledBack or
// RollFailed) and keeps it as the last roll.
func (t *table) countRoll(gen uint64, started time.Time, result RollResult, err error) {
	c := &t.count
	took := time.Since(started)
	switch result {
	case RollCompleted:
		c.Rolls.Completed++
	case RollRolledBack:
		c.Rolls.RolledBack++
	default:
		c.Rolls.Failed++
	}
	c.RollDuration.observe(took)
	t.lastRoll = &LastRoll{Generation: gen, Result: result, Started: started, Took: took}
	if err != nil {
		t.lastRoll.Error = err.Error()
	}
}

// countUpgrade counts an upgrade that failed, or (in the new program) one
// that completed.
func (t *table) countUpgrade(ok bool) {
	if ok {
		t.count.Upgrades.Completed++
	} else {
		t.count.Upgrades.Failed++
	}
}

// metricsOptions are the options of this file and queue.go.
type metricsOptions struct {
	addr    string                             // WithMetrics; "" for none
	handler func(*Supervisor) http.Handler     // WithMetrics
	stuck   time.Duration                      // WithNotServedAfter; 0: the default, <0: off
	parsed  listener.Addr                      // addr, parsed by New
	sample  func(*listener.Socket) SocketQueue // test seam; nil: sampleQueue
}

// totals are the counters with this program's notify drops added to
// the earlier programs': what Stats shows and an upgrade hands on.
func (t *table) totals() counters {
	c := t.count
	d := t.notify.dropped()
	c.Notify.Foreign += uint64(t.foreign)
	c.Notify.NoCredentials += d.NoCredentials
	c.Notify.Oversized += d.Oversized
	c.Notify.Malformed += d.Malformed
	c.Notify.FdsClosed += d.FdsClosed
	c.Notify.ReadErrors += d.ReadErrors
	return c
}

package supervisor

import (
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
)

// Metrics is a snapshot of the supervisor's counters, gauges and
// histograms, for a monitoring system (package metrics turns it into
// Prometheus metrics). The counters count since the first program of this
// process started: an in-place upgrade hands them on, so they never go
// backwards while the pid lives.
type Metrics struct {
	// Generation is the generation serving; GenerationsAlive counts the
	// distinct generations of the worker processes alive.
	Generation       uint64
	GenerationsAlive int
	// Workers counts the workers by state.
	Workers WorkerCounts

	// Starts counts worker processes started.
	Starts   uint64
	Exits    ExitReasons
	Rolls    RollResults
	Upgrades UpgradeResults
	// NotifyDropped counts the notify datagrams dropped, by reason.
	NotifyDropped NotifyDrops

	// RollDuration: from the start of a roll to its end, completed or not.
	// DrainDuration: from a worker being asked to exit to its exit.
	// SpawnToReady: from a worker's start to its being ready.
	RollDuration, DrainDuration, SpawnToReady Histogram

	// Sockets are the listening sockets passed to the workers, with their
	// accept queues as the kernel reports them now.
	Sockets []SocketQueue
}

// WorkerCounts counts workers by state. Starting and Ready count the
// workers in slots; Retiring, the ones asked to exit that have not yet;
// Backoff, the slots left empty until their backoff has passed.
type WorkerCounts struct {
	Starting, Ready, Retiring, Backoff int
}

// ExitReasons counts worker exits by why they happened. Retired: the
// supervisor asked (a roll, a scale down, a stop). Watchdog: the watchdog
// signalled it. Recycled: it reached its maximum lifetime. The others are
// exits nobody asked for: Clean with status 0, Failed with another status,
// Signal killed by a signal.
type ExitReasons struct {
	Clean, Failed, Signal, Watchdog, Recycled, Retired uint64
}

// RollResults counts rolls by how they ended. RolledBack counts rolls
// whose new generation was replaced by the previous one again.
type RollResults struct {
	Completed, Failed, RolledBack uint64
}

// UpgradeResults counts in-place upgrades: Completed ones are counted by
// the new program once it has taken over.
type UpgradeResults struct {
	Completed, Failed uint64
}

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

// durationBounds are the histograms' buckets, in seconds: from a fast
// spawn (milliseconds) to a long drain (minutes).
var durationBounds = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newHistogram() Histogram {
	return Histogram{Bounds: slices.Clone(durationBounds), Counts: make([]uint64, len(durationBounds)+1)}
}

func (h *Histogram) observe(d time.Duration) {
	if h.Counts == nil {
		*h = newHistogram()
	}
	v := max(d.Seconds(), 0)
	h.Counts[sort.SearchFloat64s(h.Bounds, v)]++
	h.Sum += v
	h.Count++
}

// merge adds o, a histogram an earlier program kept, possibly with other
// bounds: each of its buckets goes to the first of h's whose bound is at
// least as large, so no count is lost.
func (h *Histogram) merge(o Histogram) {
	if h.Counts == nil {
		*h = newHistogram()
	}
	if len(o.Counts) != len(o.Bounds)+1 {
		return // not a histogram this program wrote
	}
	for i, n := range o.Counts {
		j := len(h.Bounds)
		if i < len(o.Bounds) {
			j = sort.SearchFloat64s(h.Bounds, o.Bounds[i])
		}
		h.Counts[j] += n
	}
	h.Sum += o.Sum
	h.Count += o.Count
}

func (h Histogram) clone() Histogram {
	h.Bounds, h.Counts = slices.Clone(h.Bounds), slices.Clone(h.Counts)
	return h
}

// counters are the table's counts that outlive a program: they travel in
// the upgrade state. Only the run goroutine touches them.
type counters struct {
	Starts   uint64
	Exits    ExitReasons
	Rolls    RollResults
	Upgrades UpgradeResults
	// Notify holds the drops counted by earlier programs; this program's
	// notify socket counts its own.
	Notify NotifyDrops

	RollDuration, DrainDuration, SpawnToReady Histogram
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

// LastExit is the last exit of a slot's worker that the supervisor did not
// ask for, or that the watchdog caused: the one a person looks for.
type LastExit struct {
	Pid        int
	Generation uint64
	// Status is the exit status ("exit status 1", "signal: killed");
	// Reason is its label in ExitReasons ("failed", "signal", "retired"…).
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

// metricsOptions are the options of this file and queue.go.
type metricsOptions struct {
	addr    string                             // WithMetrics; "" for none
	handler func(*Supervisor) http.Handler     // WithMetrics
	stuck   time.Duration                      // WithNotServedAfter; 0: the default, <0: off
	parsed  listener.Addr                      // addr, parsed by New
	sample  func(*listener.Socket) SocketQueue // test seam; nil: sampleQueue
}

// published is what the run goroutine last published for readers on
// other goroutines: Metrics reads it without waiting for the loop, so a
// scrape is answered even while the loop is busy (an upgrade's exec).
type published struct {
	m     Metrics
	socks []*listener.Socket
}

// publish stores the table's metrics for Supervisor.Metrics. The run loop
// calls it after every event.
func (t *table) publish() {
	m := Metrics{
		Generation:    t.gen,
		Starts:        t.count.Starts,
		Exits:         t.count.Exits,
		Rolls:         t.count.Rolls,
		Upgrades:      t.count.Upgrades,
		RollDuration:  t.count.RollDuration.clone(),
		DrainDuration: t.count.DrainDuration.clone(),
		SpawnToReady:  t.count.SpawnToReady.clone(),
	}
	d := t.notify.dropped()
	m.NotifyDropped = NotifyDrops{
		Foreign:       t.count.Notify.Foreign + uint64(t.foreign),
		NoCredentials: t.count.Notify.NoCredentials + d.NoCredentials,
		Oversized:     t.count.Notify.Oversized + d.Oversized,
		Malformed:     t.count.Notify.Malformed + d.Malformed,
		FdsClosed:     t.count.Notify.FdsClosed + d.FdsClosed,
	}
	m.Workers = t.workerCounts(time.Now())
	gens := make(map[uint64]struct{})
	for w := range t.live {
		gens[w.info.Generation] = struct{}{}
	}
	m.GenerationsAlive = len(gens)
	m.Sockets = t.queues.published()
	t.s.pub.Store(&published{m: m, socks: t.socks})
}

func (t *table) workerCounts(now time.Time) WorkerCounts {
	var c WorkerCounts
	for _, sl := range t.slots {
		for _, w := range []*child{sl.w, sl.next} {
			switch {
			case w == nil:
			case w.info.State == Starting:
				c.Starting++
			case w.info.State == Ready:
				c.Ready++
			}
		}
		if sl.w == nil && !sl.vetoed && !t.stopping && now.Before(sl.notBefore) {
			c.Backoff++
		}
	}
	for w := range t.live {
		if w.info.State == Stopping || t.slotOf(w) == nil {
			c.Retiring++
		}
	}
	return c
}

// Metrics returns the supervisor's metrics: the counters as the run
// goroutine last published them (it does after every event) and the accept
// queues as the kernel reports them now. It does not wait for the run
// goroutine, so it answers during an upgrade too. Before Run it returns
// the zero Metrics; after Run, the last values.
func (s *Supervisor) Metrics() Metrics {
	p := s.pub.Load()
	if p == nil {
		return Metrics{}
	}
	m := p.m
	m.RollDuration, m.DrainDuration, m.SpawnToReady = m.RollDuration.clone(), m.DrainDuration.clone(), m.SpawnToReady.clone()
	m.Sockets = slices.Clone(m.Sockets)
	sample := s.o.metrics.sample
	if sample == nil {
		sample = sampleQueue
	}
	for i, sock := range p.socks {
		q := sample(sock)
		if i < len(m.Sockets) {
			q.NotServed, q.NotServedSince = m.Sockets[i].NotServed, m.Sockets[i].NotServedSince
			m.Sockets[i] = q
		}
	}
	return m
}

package metrics

import (
	"net/http"
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/handoff-dev/handoff/supervisor"
)

// Collector is a prometheus.Collector for one supervisor. Collect reads
// Supervisor.LastStats, which never waits for the supervisor's run loop.
type Collector struct {
	s         *supervisor.Supervisor
	overflows func() (uint64, bool)

	workers, generation, generationsAlive          *prometheus.Desc
	starts, exits, rolls, upgrades                 *prometheus.Desc
	rollDuration, drainDuration, spawnToReady      *prometheus.Desc
	queueLength, queueMax, notServed, overflowsDsc *prometheus.Desc
	notifyDropped, buildInfo                       *prometheus.Desc
	handover, handoverRefused, handoverInFlight    *prometheus.Desc
	version, goVersion                             string
}

// NewCollector returns the collector of s's metrics.
func NewCollector(s *supervisor.Supervisor) *Collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("handoff_"+name, help, labels, nil)
	}
	c := &Collector{
		s:                s,
		overflows:        listenOverflows,
		workers:          d("workers", "Workers by state: starting and ready in slots, retiring (asked to exit), backoff (empty slots waiting to restart).", "state"),
		generation:       d("generation", "The generation of workers serving."),
		generationsAlive: d("generations_alive", "Distinct generations among the worker processes alive."),
		starts:           d("worker_starts_total", "Worker processes started."),
		exits:            d("worker_exits_total", "Worker exits by reason: clean, failed and signal were not asked for; watchdog, recycled and retired were.", "reason"),
		rolls:            d("rolls_total", "Rolls to a new generation by result.", "result"),
		upgrades:         d("upgrades_total", "In-place upgrades of the supervisor by result.", "result"),
		handover:         d("handover_connections_total", "Connections a draining worker handed over, by result: handed (taken by another worker), returned (to the worker that handed it), failed (closed, its sender gone).", "result"),
		handoverRefused:  d("handover_refused_total", "Handed connections a worker refused (then offered to the next)."),
		handoverInFlight: d("handover_in_flight", "Handed connections the supervisor holds, waiting for a worker's acknowledgement."),
		rollDuration:     d("roll_duration_seconds", "Time from the start of a roll to its end."),
		drainDuration:    d("drain_duration_seconds", "Time from a worker being asked to exit to its exit."),
		spawnToReady:     d("spawn_to_ready_seconds", "Time from a worker's start to its being ready."),
		queueLength:      d("listen_queue_length", "Connections waiting in the listening socket's accept queue, as the kernel reports it.", "socket", "addr"),
		queueMax:         d("listen_queue_max", "The listening socket's accept queue limit (its backlog), as the kernel reports it.", "socket", "addr"),
		notServed:        d("listen_not_served", "1 while the socket's accept queue stays non-empty without going down while workers are ready.", "socket", "addr"),
		overflowsDsc:     d("listen_overflows_total", "Connections dropped because an accept queue was full: TcpExt ListenOverflows of the supervisor's network namespace, for all its TCP listeners."),
		notifyDropped:    d("notify_datagrams_dropped_total", "Notify datagrams dropped by reason.", "reason"),
		buildInfo:        d("build_info", "The supervisor's build: always 1.", "version", "goversion"),
		version:          "devel",
		goVersion:        runtime.Version(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		c.version = bi.Main.Version
	}
	return c
}

// Describe sends the descriptors of every metric Collect sends.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.workers, c.generation, c.generationsAlive, c.starts, c.exits, c.rolls, c.upgrades,
		c.rollDuration, c.drainDuration, c.spawnToReady, c.queueLength, c.queueMax, c.notServed,
		c.overflowsDsc, c.notifyDropped, c.buildInfo, c.handover, c.handoverRefused, c.handoverInFlight,
	} {
		ch <- d
	}
}

// Collect sends the supervisor's metrics as they are now, all from one
// Supervisor.LastStats.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.LastStats() // never waits for the run goroutine: a scrape during an upgrade is answered
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	w := countWorkers(st)
	gauge(c.workers, float64(w.starting), "starting")
	gauge(c.workers, float64(w.ready), "ready")
	gauge(c.workers, float64(w.retiring), "retiring")
	gauge(c.workers, float64(w.backoff), "backoff")
	gauge(c.generation, float64(st.Generation))
	gauge(c.generationsAlive, float64(st.GenerationsAlive()))
	counter(c.starts, st.Starts)
	for _, e := range []struct {
		reason string
		n      uint64
	}{
		{"clean", st.Exits.Clean}, {"failed", st.Exits.Failed}, {"signal", st.Exits.Signal},
		{"watchdog", st.Exits.Watchdog}, {"recycled", st.Exits.Recycled}, {"retired", st.Exits.Retired},
	} {
		counter(c.exits, e.n, e.reason)
	}
	counter(c.rolls, st.Rolls.Completed, "completed")
	counter(c.rolls, st.Rolls.Failed, "failed")
	counter(c.rolls, st.Rolls.RolledBack, "rolled_back")
	counter(c.upgrades, st.Upgrades.Completed, "completed")
	counter(c.upgrades, st.Upgrades.Failed, "failed")
	counter(c.handover, st.Handover.Handed, "handed")
	counter(c.handover, st.Handover.Returned, "returned")
	counter(c.handover, st.Handover.Failed, "failed")
	counter(c.handoverRefused, st.Handover.Refused)
	gauge(c.handoverInFlight, float64(st.Handover.InFlight))
	histogram(ch, c.rollDuration, st.RollDuration)
	histogram(ch, c.drainDuration, st.DrainDuration)
	histogram(ch, c.spawnToReady, st.SpawnToReady)
	for _, q := range st.Sockets {
		if q.Known {
			gauge(c.queueLength, float64(q.Len), q.Name, q.Addr)
			gauge(c.queueMax, float64(q.Max), q.Name, q.Addr)
		}
		ns := 0.0
		if q.NotServed {
			ns = 1
		}
		gauge(c.notServed, ns, q.Name, q.Addr)
	}
	if n, ok := c.overflows(); ok {
		counter(c.overflowsDsc, n)
	}
	counter(c.notifyDropped, st.NotifyDropped.Foreign, "foreign")
	counter(c.notifyDropped, st.NotifyDropped.NoCredentials, "no_credentials")
	counter(c.notifyDropped, st.NotifyDropped.Oversized, "oversized")
	counter(c.notifyDropped, st.NotifyDropped.Malformed, "malformed")
	gauge(c.buildInfo, 1, c.version, c.goVersion)
}

// workerCounts are the workers gauge's values.
type workerCounts struct{ starting, ready, retiring, backoff int }

// countWorkers counts the workers of st by state: starting and ready, the
// workers in slots; retiring, the ones asked to exit (in a slot or not);
// backoff, the empty slots waiting to restart.
func countWorkers(st supervisor.Stats) workerCounts {
	var c workerCounts
	for _, w := range st.Workers {
		switch w.State {
		case supervisor.Starting:
			c.starting++
		case supervisor.Ready:
			c.ready++
		case supervisor.Stopping:
			c.retiring++
		}
	}
	c.retiring += len(st.Retiring)
	for _, sl := range st.Slots {
		if !sl.NextRetry.IsZero() {
			c.backoff++
		}
	}
	return c
}

// histogram sends h, whose counts are per bucket, with cumulative buckets.
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h supervisor.Histogram) {
	buckets := make(map[float64]uint64, len(h.Bounds))
	var cum uint64
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			cum += h.Counts[i]
		}
		buckets[b] = cum
	}
	ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets)
}

// Handler returns the /metrics handler of s: its collector and the process
// collector of the supervisor's process (whose counters, read from /proc,
// survive an upgrade in place). It leaves out the Go runtime collector,
// whose counters restart at every upgrade. It has the signature
// supervisor.WithMetrics takes.
func Handler(s *supervisor.Supervisor) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(s),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

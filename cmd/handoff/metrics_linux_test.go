//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape is one GET of /metrics: the samples by name and labels, or the
// error.
type scrape struct {
	at      time.Time
	phase   string
	err     error
	samples map[string]float64 // counter-like series: name{labels} → value
	gauges  map[string]float64
	body    []byte
}

// parseMetrics parses the text format into counter-like series (counters,
// histogram counts and sums) and gauges.
func parseMetrics(body []byte) (counters, gauges map[string]float64, err error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	counters, gauges = map[string]float64{}, map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			sort.Strings(labels)
			key := name + "{" + strings.Join(labels, ",") + "}"
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				counters[key] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				gauges[key] = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				counters[key+"_count"] = float64(h.GetSampleCount())
				counters[key+"_sum"] = h.GetSampleSum()
				for _, b := range h.GetBucket() {
					counters[fmt.Sprintf("%s_bucket{le=%g}", key, b.GetUpperBound())] = float64(b.GetCumulativeCount())
				}
			}
		}
	}
	return counters, gauges, nil
}

// scraper GETs url every period until stopped, on a new connection each
// time, as Prometheus does with keep-alive off on the server's side.
type scraper struct {
	url   string
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	phase string
	all   []scrape
	more  chan struct{} // closed when a scrape is appended to all, then replaced
}

func startScraper(url string, period time.Duration) *scraper {
	s := &scraper{url: url, stop: make(chan struct{}), done: make(chan struct{}), phase: "start", more: make(chan struct{})}
	client := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(s.done)
		defer client.CloseIdleConnections()
		tick := time.NewTicker(period)
		defer tick.Stop()
		for {
			sc := s.get(client)
			s.mu.Lock()
			sc.phase = s.phase
			s.all = append(s.all, sc)
			close(s.more)
			s.more = make(chan struct{})
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *scraper) get(client *http.Client) scrape {
	sc := scrape{at: time.Now()}
	resp, err := client.Get(s.url)
	if err != nil {
		sc.err = err
		return sc
	}
	defer resp.Body.Close()
	sc.body, sc.err = io.ReadAll(resp.Body)
	if sc.err == nil && resp.StatusCode != http.StatusOK {
		sc.err = fmt.Errorf("status %s", resp.Status)
	}
	if sc.err == nil {
		sc.samples, sc.gauges, sc.err = parseMetrics(sc.body)
	}
	return sc
}

// awaitReady returns once a scrape begun after the call counts at least
// min workers ready. The supervisor publishes what /metrics reports at most
// every 50 ms in a burst of events, so the gauge may lag the log line that
// said a worker is ready by as much: a phase that demands N ready begins
// once a scrape has seen them.
func (s *scraper) awaitReady(t *testing.T, min float64) {
	t.Helper()
	since := time.Now()
	timeout := time.After(time.Until(deadline(t)))
	for {
		s.mu.Lock()
		more := s.more
		for _, sc := range s.all {
			if sc.at.After(since) && sc.err == nil && sc.gauges[`handoff_workers{state=ready}`] >= min {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
		select {
		case <-more:
		case <-s.done:
			t.Fatalf("the scraper stopped before a scrape saw %g workers ready", min)
		case <-timeout:
			t.Fatalf("no scrape saw %g workers ready in time", min)
		}
	}
}

func (s *scraper) setPhase(p string) {
	s.mu.Lock()
	s.phase = p
	s.mu.Unlock()
}

func (s *scraper) finish() []scrape {
	close(s.stop)
	<-s.done
	return s.all
}

// TestMetricsThroughRestarts is the test: /metrics scraped every
// 100ms through 10 rolls, 2 in-place upgrades and 5 SIGKILLed workers:
// no scrape fails, no counter ever goes down, the exit, roll and upgrade
// counters equal the events caused, and handoff_workers{state="ready"}
// never drops below N (nor below N-1 while a killed worker is replaced).
// The last scrape passes promtool check metrics.
func TestMetricsThroughRestarts(t *testing.T) {
	checkFds(t)
	const n = 2
	pidfile := t.TempDir() + "/handoff.pid"
	p := startProc(t, bins.handoff, []string{"-workers", fmt.Sprint(n), "-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-metrics", "tcp://127.0.0.1:0", "-pidfile", pidfile, "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "serving metrics")
	_, from = p.waitReady(from, n, 1)
	s := startScraper("http://"+l.Addr+"/metrics", 100*time.Millisecond)
	stopped := false
	defer func() {
		if !stopped {
			s.finish()
		}
	}()

	s.awaitReady(t, n)
	s.setPhase("rolls")
	for gen := uint64(2); gen <= 11; gen++ {
		p.cmd.Process.Signal(syscall.SIGHUP)
		_, from = p.waitLog(from, fmt.Sprintf("roll to generation %d complete", gen), func(l logLine) bool {
			return l.Msg == "roll complete" && l.Generation == gen
		})
	}
	for i := range 2 {
		p.cmd.Process.Signal(syscall.SIGUSR2)
		_, from = p.waitMsg(from, "supervisor upgraded in place")
		t.Logf("upgrade %d done", i+1)
	}
	// After the upgrades, each kill leaves N-1 ready until its replacement is.
	for i := range 5 {
		st := statusJSON(t, "-pidfile", pidfile)
		victim := st.Workers[i%len(st.Workers)]
		s.setPhase("kill")
		if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_, from = p.waitLog(from, fmt.Sprintf("worker %d restarted", victim.Pid), func(l logLine) bool {
			return l.Msg == "worker died; restarting" && l.Pid == victim.Pid
		})
		_, from = p.waitLog(from, "its replacement ready", func(l logLine) bool {
			return l.Msg == "worker ready" && l.Worker == victim.Slot
		})
		statusJSON(t, "-pidfile", pidfile)
		s.awaitReady(t, n)
		s.setPhase("after kill")
	}
	// Every retired worker has exited: 2 per roll.
	for i, at := 0, 0; i < 10*n; i++ {
		_, at = p.waitMsg(at, "worker exited")
	}
	statusJSON(t, "-pidfile", pidfile)
	time.Sleep(150 * time.Millisecond) // one more scrape period, so the last scrape sees the end (not a pass/fail timing)
	scrapes := s.finish()
	stopped = true

	failed := 0
	last := map[string]float64{}
	lastAt := map[string]int{}
	for i, sc := range scrapes {
		if sc.err != nil {
			failed++
			t.Errorf("scrape %d (%s, %s): %v", i, sc.phase, sc.at.Format("15:04:05.000"), sc.err)
			continue
		}
		for k, v := range sc.samples {
			if !strings.HasPrefix(k, "handoff_") && !strings.HasPrefix(k, "process_") {
				continue
			}
			if prev, ok := last[k]; ok && v < prev {
				t.Errorf("scrape %d (%s): %s went down from %g (scrape %d) to %g", i, sc.phase, k, prev, lastAt[k], v)
			}
			last[k], lastAt[k] = v, i
		}
		ready := sc.gauges[`handoff_workers{state=ready}`]
		min := float64(n)
		if sc.phase == "kill" {
			min = n - 1
		}
		if sc.phase != "start" && ready < min {
			t.Errorf("scrape %d (%s): %g workers ready, want at least %g", i, sc.phase, ready, min)
		}
	}
	t.Logf("%d scrapes, %d failed", len(scrapes), failed)
	if len(scrapes) < 10 {
		t.Fatalf("only %d scrapes", len(scrapes))
	}
	end := scrapes[len(scrapes)-1]
	if end.err != nil {
		t.Fatalf("the last scrape failed: %v", end.err)
	}
	want := map[string]float64{
		"handoff_worker_exits_total{reason=signal}":   5,
		"handoff_worker_exits_total{reason=retired}":  10 * n,
		"handoff_worker_exits_total{reason=clean}":    0,
		"handoff_worker_exits_total{reason=failed}":   0,
		"handoff_worker_exits_total{reason=watchdog}": 0,
		"handoff_worker_exits_total{reason=recycled}": 0,
		"handoff_rolls_total{result=completed}":       10,
		"handoff_rolls_total{result=failed}":          0,
		"handoff_upgrades_total{result=completed}":    2,
		"handoff_upgrades_total{result=failed}":       0,
		"handoff_worker_starts_total{}":               n + 10*n + 5,
		"handoff_roll_duration_seconds{}_count":       10,
		"handoff_drain_duration_seconds{}_count":      10 * n,
		"handoff_spawn_to_ready_seconds{}_count":      n + 10*n + 5,
	}
	for k, v := range want {
		if got, ok := end.samples[k]; !ok || got != v {
			t.Errorf("last scrape: %s = %g (present %v), want %g", k, got, ok, v)
		}
	}
	if g := end.gauges["handoff_generation{}"]; g != 11 {
		t.Errorf("handoff_generation %g, want 11", g)
	}
	if !slices.ContainsFunc(mapsKeys(end.gauges), func(k string) bool {
		return strings.HasPrefix(k, "handoff_build_info{goversion="+runtime.Version()+",version=")
	}) {
		t.Errorf("the last scrape has no handoff_build_info for %s", runtime.Version())
	}
	for _, name := range []string{"handoff_listen_queue_length", "handoff_listen_queue_max", "handoff_listen_not_served", "handoff_workers", "handoff_generations_alive", "process_start_time_seconds"} {
		if !slices.ContainsFunc(mapsKeys(end.gauges), func(k string) bool { return strings.HasPrefix(k, name+"{") }) {
			t.Errorf("the last scrape has no %s", name)
		}
	}
	promtoolCheck(t, end.body)
}

// promtoolCheck runs Debian's promtool check metrics on body.
func promtoolCheck(t *testing.T, body []byte) {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func mapsKeys(m map[string]float64) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

//go:build linux

package metrics_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"

	"github.com/handoff-dev/handoff/metrics"
	"github.com/handoff-dev/handoff/supervisor"
)

const helperEnv = "HANDOFF_TEST_HELPER"

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "idle" {
		// A worker that holds its sockets until SIGTERM.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// names are every metric package metrics documents.
var names = []string{
	"handoff_workers", "handoff_generation", "handoff_generations_alive",
	"handoff_worker_starts_total", "handoff_worker_exits_total", "handoff_rolls_total", "handoff_upgrades_total",
	"handoff_roll_duration_seconds", "handoff_drain_duration_seconds", "handoff_spawn_to_ready_seconds",
	"handoff_listen_queue_length", "handoff_listen_queue_max", "handoff_listen_not_served",
	"handoff_listen_overflows_total", "handoff_notify_datagrams_dropped_total", "handoff_build_info",
	"process_cpu_seconds_total", "process_start_time_seconds", "process_resident_memory_bytes",
}

// running starts a supervisor of two idle workers with the metrics
// endpoint, and returns it once it serves, with the endpoint's URL.
func running(t *testing.T) (*supervisor.Supervisor, string) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	s, err := supervisor.New(supervisor.Command{Path: exe, Env: append(os.Environ(), helperEnv+"=idle", "GORACE=atexit_sleep_ms=0")},
		supervisor.WithWorkers(2), supervisor.WithListen("web=tcp://127.0.0.1:0"),
		supervisor.WithMetrics("tcp://127.0.0.1:0", metrics.Handler),
		supervisor.WithLogger(zaptest.NewLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run(t.Context()) }()
	t.Cleanup(func() {
		s.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-s.Running():
	case err := <-done:
		t.Fatalf("Run: %v", err)
	}
	addr := s.Stats().MetricsAddr
	if addr == "" {
		t.Fatal("Stats has no MetricsAddr")
	}
	return s, "http://" + addr + "/metrics"
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	c := &http.Client{Timeout: 20 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	if !resp.Close {
		t.Errorf("the response keeps the connection: keep-alive should be off")
	}
	c.CloseIdleConnections()
	return body
}

// families parses the text format, as Prometheus does.
func families(t *testing.T, body []byte) map[string]bool {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parsing /metrics: %v\n%s", err, body)
	}
	got := map[string]bool{}
	for n := range fams {
		got[n] = true
	}
	return got
}

// TestEndpoint: the endpoint serves every documented metric in a format
// the Prometheus parser and promtool accept, and the collector passes
// client_golang's linter.
func TestEndpoint(t *testing.T) {
	s, url := running(t)
	body := get(t, url)
	got := families(t, body)
	for _, n := range names {
		if !got[n] {
			t.Errorf("/metrics has no %s", n)
		}
	}
	if !strings.Contains(string(body), `handoff_listen_queue_max{addr="127.0.0.1:`) || !strings.Contains(string(body), `socket="web"`) {
		t.Errorf("no queue of socket web in:\n%s", body)
	}
	if problems, err := testutil.CollectAndLint(metrics.NewCollector(s)); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %+v", err, problems)
	}
	// A registry of the program's own takes the collector too.
	reg := prometheus.NewRegistry()
	if err := reg.Register(metrics.NewCollector(s)); err != nil {
		t.Fatal(err)
	}
	if n, err := testutil.GatherAndCount(reg, "handoff_workers"); err != nil || n != 4 {
		t.Errorf("handoff_workers: %d series (%v), want one per state", n, err)
	}
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (Debian's prometheus package; .ci/run installs it)")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// TestDashboardMetricsExist: every metric the Grafana dashboard plots is
// one the endpoint serves.
func TestDashboardMetricsExist(t *testing.T) {
	b, err := os.ReadFile("../docs/grafana/handoff.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	_, url := running(t)
	got := families(t, get(t, url))
	re := regexp.MustCompile(`\b(?:handoff|process)_[a-z_]+\b`)
	var used []string
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q plots nothing", p.Title)
		}
		for _, tg := range p.Targets {
			for _, m := range re.FindAllString(tg.Expr, -1) {
				name := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if base, ok := strings.CutSuffix(m, suffix); ok && got[base] {
						name = base
					}
				}
				if !got[name] {
					t.Errorf("panel %q uses %s, which /metrics does not serve", p.Title, m)
				}
				used = append(used, name)
			}
		}
	}
	for _, want := range []string{"handoff_workers", "handoff_rolls_total", "handoff_worker_exits_total", "handoff_listen_queue_length", "handoff_drain_duration_seconds"} {
		if !slices.Contains(used, want) {
			t.Errorf("the dashboard does not plot %s", want)
		}
	}
	fmt.Fprintf(io.Discard, "%d", len(used))
}

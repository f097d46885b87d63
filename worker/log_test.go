package worker

import (
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestFormatLogger: under a supervisor that logs JSON or console lines,
// the worker's logger writes its lines the same way: JSON with ts, level
// and msg, durations in seconds; console lines with the supervisor's
// shape. Another value leaves the choice to slog.Default().
func TestFormatLogger(t *testing.T) {
	for format, want := range map[string]*regexp.Regexp{
		"json":    regexp.MustCompile(`^\{"level":"info","ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})","msg":"worker: drain started","pid":42,"deadline":22\.5\}\n$`),
		"console": regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} INFO  worker: drain started {8}pid=42 deadline=22\.5s\n$`),
	} {
		f, err := os.CreateTemp(t.TempDir(), "log")
		if err != nil {
			t.Fatal(err)
		}
		l := formatLogger(format, f)
		l.Debug("hidden")
		l.Info("worker: drain started", slog.Int("pid", 42), slog.Duration("deadline", 22500*time.Millisecond))
		f.Close()
		b, err := os.ReadFile(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		if !want.Match(b) {
			t.Errorf("%s: logged %q, want %v", format, b, want)
		}
		if format == "json" {
			var m map[string]any
			if err := json.Unmarshal(b, &m); err != nil {
				t.Errorf("json: %q: %v", b, err)
			}
		}
	}
	for _, format := range []string{"", "text", "JSON"} {
		if l := formatLogger(format, os.Stderr); l != nil {
			t.Errorf("formatLogger(%q) is not nil", format)
		}
	}
	t.Setenv(EnvLogFormat, "")
	if l := defaultLogger(); l != slog.Default() {
		t.Errorf("without %s the drain does not log to slog.Default()", EnvLogFormat)
	}
}

// TestLinksNoSupervisorLogging: the worker package logs in the
// supervisor's format without linking zap or the supervisor's logging.
func TestLinksNoSupervisorLogging(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if strings.HasPrefix(d, "go.uber.org/zap") || d == "github.com/handoff-dev/handoff/internal/logging" {
			t.Errorf("worker depends on %s", d)
		}
	}
}

// TestLogRun: Run's own lines (the supervisor is gone, a watchdog error)
// are in the supervisor's format when it named one, and left to the
// caller's plain line otherwise.
func TestLogRun(t *testing.T) {
	t.Setenv(EnvLogFormat, "")
	if logRun(slog.LevelWarn, "worker: the supervisor is gone; exiting") {
		t.Error("logRun logged without a format")
	}
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	stderr := os.Stderr
	os.Stderr = f
	t.Setenv(EnvLogFormat, "json")
	ok := logRun(slog.LevelWarn, "worker: the supervisor is gone; exiting", slog.Int("pid", 42))
	os.Stderr = stderr
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); !ok || err != nil || m["level"] != "warn" || m["msg"] != "worker: the supervisor is gone; exiting" || m["pid"] != 42.0 {
		t.Errorf("logRun %v wrote %q (%v)", ok, b, err)
	}
}

// TestDrainLoggerGivenWins: under a supervisor that named its format, the
// drain logs in it unless a logger was given.
func TestDrainLoggerGivenWins(t *testing.T) {
	t.Setenv(EnvLogFormat, "console")
	o := defaultDrainOptions()
	if o.logger == slog.Default() || o.logger == nil {
		t.Errorf("with %s=console the drain logs to %v, not in the supervisor's format", EnvLogFormat, o.logger)
	}
	mine := slog.New(slog.DiscardHandler)
	WithDrainLogger(mine).applyDrain(&o)
	if o.logger != mine {
		t.Error("WithDrainLogger did not win over the supervisor's format")
	}
}

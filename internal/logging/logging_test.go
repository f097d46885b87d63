package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// records logs through a SlogCore into a JSON handler at level and returns
// the decoded records.
func records(t *testing.T, level slog.Level, log func(*zap.Logger)) []map[string]any {
	t.Helper()
	var buf bytes.Buffer
	h := slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: level})
	log(zap.New(SlogCore(h)))
	var out []map[string]any
	for line := range strings.Lines(buf.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("handler wrote %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestSlogCoreLevels(t *testing.T) {
	recs := records(t, slog.LevelInfo, func(l *zap.Logger) {
		l.Debug("debug")
		l.Info("info")
		l.Warn("warn")
		l.Error("error")
	})
	var got []string
	for _, r := range recs {
		got = append(got, fmt.Sprint(r["level"], " ", r["msg"]))
	}
	want := []string{"INFO info", "WARN warn", "ERROR error"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("records %q, want %q (debug filtered by the handler's level)", got, want)
	}
	for zl, sl := range map[zap.AtomicLevel]slog.Level{
		zap.NewAtomicLevelAt(zap.DebugLevel): slog.LevelDebug,
		zap.NewAtomicLevelAt(zap.InfoLevel):  slog.LevelInfo,
		zap.NewAtomicLevelAt(zap.WarnLevel):  slog.LevelWarn,
		zap.NewAtomicLevelAt(zap.ErrorLevel): slog.LevelError,
	} {
		if got := Level(zl.Level()); got != sl {
			t.Errorf("Level(%v) = %v, want %v", zl.Level(), got, sl)
		}
	}
	if Level(zap.DPanicLevel) <= slog.LevelError {
		t.Errorf("Level(DPanic) = %v, want above error", Level(zap.DPanicLevel))
	}
}

func TestSlogCoreFields(t *testing.T) {
	recs := records(t, slog.LevelDebug, func(l *zap.Logger) {
		l.With(zap.Namespace("req"), zap.String("id", "a")).Debug("nested", zap.Int("n", 1))
		l = l.Named("sup").With(zap.Int("pid", 42))
		l.Info("worker exited",
			zap.Uint64("generation", 3),
			zap.String("status", "exit status 1"),
			zap.Error(errors.New("boom")),
			zap.Duration("took", 1500*time.Millisecond),
			zap.Stringer("addr", stringer("127.0.0.1:8080")),
			zap.Bool("start_failure", true),
			zap.Namespace("roll"),
			zap.Int("surge", 2),
		)
	})
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %v", len(recs), recs)
	}
	r := recs[1]
	want := map[string]any{
		"msg": "worker exited", "level": "INFO", "logger": "sup", "pid": 42.0, "generation": 3.0,
		"status": "exit status 1", "error": "boom", "took": float64(1500 * time.Millisecond),
		"addr": "127.0.0.1:8080", "start_failure": true,
		"roll": map[string]any{"surge": 2.0},
	}
	for k, v := range want {
		if fmt.Sprint(r[k]) != fmt.Sprint(v) {
			t.Errorf("%s = %v, want %v (record %v)", k, r[k], v, r)
		}
	}
	if _, ok := r["time"]; !ok {
		t.Errorf("record without a time: %v", r)
	}
	n := recs[0]
	if got := fmt.Sprint(n["req"]); got != fmt.Sprint(map[string]any{"id": "a", "n": 1.0}) || n["level"] != "DEBUG" {
		t.Errorf("nested record %v: want req={id:a n:1} at DEBUG", n)
	}
}

type stringer string

func (s stringer) String() string { return string(s) }

func TestNewWritesJSONLinesToAFile(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l := New(f)
	l.Debug("hidden")
	l.Info("worker started", zap.Int("worker", 0))
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("log file %q is not one JSON line: %v", b, err)
	}
	if m["level"] != "info" || m["msg"] != "worker started" || m["worker"] != 0.0 {
		t.Fatalf("logged %v, want level info, msg \"worker started\", worker 0", m)
	}
}

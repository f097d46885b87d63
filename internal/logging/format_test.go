package logging

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/handoff-dev/handoff/internal/logging/logline"
)

// TestConsoleLog: one line per event, fields as key=value, quoted where a
// value would be ambiguous.
func TestConsoleLog(t *testing.T) {
	var buf bytes.Buffer
	log := zap.New(newConsoleCore(zapcore.AddSync(&buf), false)).With(zap.Int("worker", 0))
	log.Info("worker ready", zap.Int("pid", 4242), zap.Duration("after", 312456789*time.Nanosecond))
	log.Warn("worker died; restarting", zap.String("status", "exit status 1"), zap.Error(errors.New(`bad "x"`)),
		zap.Strings("names", []string{"web", "admin"}), zap.String("empty", ""))
	log.Debug("not shown")
	want := regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} INFO  worker ready {17}worker=0 pid=4242 after=312\.457ms
\d\d:\d\d:\d\d\.\d{3} WARN  worker died; restarting {6}worker=0 status="exit status 1" error="bad \\"x\\"" names=\["web","admin"\] empty=""
$`)
	if !want.Match(buf.Bytes()) {
		t.Errorf("console log:\n%s", buf.String())
	}
}

type fixedClock time.Time

func (c fixedClock) Now() time.Time                         { return time.Time(c) }
func (c fixedClock) NewTicker(d time.Duration) *time.Ticker { return time.NewTicker(d) }

// TestWorkerLinesMatchSupervisorLines: the same events, logged by the
// supervisor's logger (zap, NewFormat) and by a worker's handler (slog,
// logline.NewHandler), give the same bytes in either format: same keys,
// time, level spelling, durations (seconds in JSON), quoting.
func TestWorkerLinesMatchSupervisorLines(t *testing.T) {
	at := time.Date(2026, 12, 4, 17, 3, 7, 211_987_000, time.FixedZone("", 3600))
	for _, format := range []string{logline.JSON, logline.Console} {
		t.Run(format, func(t *testing.T) {
			f, err := os.CreateTemp(t.TempDir(), "log")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			zl := NewFormat(format, f).WithOptions(zap.WithClock(fixedClock(at)))
			if got := Format(zl.With(zap.Int("worker", 1))); got != format {
				t.Errorf("Format = %q, want %q", got, format)
			}
			zl.Info("worker: drain started", zap.Int("pid", 42), zap.Duration("deadline", 22500*time.Millisecond),
				zap.Duration("after", 312456789), zap.String("why", `a "quoted" one`), zap.Bool("ok", true))
			zl.Warn("x", zap.Error(errors.New("boom")), zap.Uint64("generation", 3), zap.String("empty", ""))
			zl.Error("no fields")
			zap := readFile(t, f)

			var buf bytes.Buffer
			h := logline.NewHandler(&buf, format, false)
			r := slog.NewRecord(at, slog.LevelInfo, "worker: drain started", 0)
			r.AddAttrs(slog.Int("pid", 42), slog.Duration("deadline", 22500*time.Millisecond),
				slog.Duration("after", 312456789), slog.String("why", `a "quoted" one`), slog.Bool("ok", true))
			h.Handle(context.Background(), r)
			r = slog.NewRecord(at, slog.LevelWarn, "x", 0)
			r.AddAttrs(slog.Any("error", errors.New("boom")), slog.Uint64("generation", 3), slog.String("empty", ""))
			h.Handle(context.Background(), r)
			h.Handle(context.Background(), slog.NewRecord(at, slog.LevelError, "no fields", 0))
			if buf.String() != zap {
				t.Errorf("the worker's handler wrote\n%s\nthe supervisor's logger\n%s", buf.String(), zap)
			}
			if format == logline.JSON && !strings.Contains(zap, `"deadline":22.5,`) {
				t.Errorf("durations not in seconds:\n%s", zap)
			}
		})
	}
}

func TestFormatOfOtherLoggers(t *testing.T) {
	for _, l := range []*zap.Logger{zap.NewNop(), zap.New(SlogCore(slog.Default().Handler()))} {
		if f := Format(l); f != "" {
			t.Errorf("Format(%v) = %q, want \"\": the supervisor cannot tell its workers", l.Core(), f)
		}
	}
}

func readFile(t *testing.T, f *os.File) string {
	t.Helper()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestDefaultIsHandoffsFormat: a supervisor given no logger logs in
// handoff's own format, so it can tell its workers to.
func TestDefaultIsHandoffsFormat(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "log")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := Format(New(f)); got != logline.JSON {
		t.Errorf("Format(New(a file)) = %q, want %q", got, logline.JSON)
	}
}

package logline

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestHandlerGroups: attributes and groups, from WithAttrs, WithGroup and
// the record, give one valid JSON object per line, each group written
// once; console lines flatten groups into dotted keys.
func TestHandlerGroups(t *testing.T) {
	log := func(format string) string {
		var buf bytes.Buffer
		l := slog.New(NewHandler(&buf, format, false)).With("worker", 1).WithGroup("drain").With("pid", 42)
		l.Info("line\n\"two\"", "deadline", 1500*time.Millisecond, slog.Group("cut", "idle", 2, slog.Group("empty")),
			"err", errors.New("boom"), "at", time.Date(2026, 1, 2, 3, 4, 5, 6_000_000, time.UTC), "bad", "\xff", "", nil)
		l.Warn("bare")
		return buf.String()
	}
	out := log(JSON)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), out)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &m); err != nil {
		t.Fatalf("%q: %v", lines[0], err)
	}
	for _, s := range []string{`"msg":"line\n\"two\""`, `"worker":1,"drain":{"pid":42,"deadline":1.5,"cut":{"idle":2},"err":"boom","at":"2026-01-02T03:04:05.006Z","bad":"\ufffd"}}`} {
		if !strings.Contains(lines[0], s) {
			t.Errorf("JSON line %s lacks %s", lines[0], s)
		}
	}
	if !strings.HasPrefix(lines[1], `{"level":"warn","ts":`) || !strings.HasSuffix(lines[1], `"msg":"bare","worker":1,"drain":{"pid":42}}`) {
		t.Errorf("JSON line %s", lines[1])
	}
	out = log(Console)
	if !strings.Contains(out, ` worker=1 drain.pid=42 drain.deadline=1.5s drain.cut.idle=2 drain.err=boom drain.at=2026-01-02T03:04:05.006Z drain.bad=`) ||
		!strings.Contains(out, " INFO  line\n\"two\" ") ||
		!strings.Contains(out, " WARN  bare                         worker=1 drain.pid=42\n") {
		t.Errorf("console lines:\n%s", out)
	}
}

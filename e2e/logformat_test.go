//go:build linux

package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestOneLogFormat: the example, a supervisor given no logger, and its
// workers write one format on their shared stderr through a roll and a
// stop: every line a JSON object with ts (ISO 8601), a lowercase level and
// msg, and no slog "time" key.
func TestOneLogFormat(t *testing.T) {
	s := startExample(t, "-listen", "127.0.0.1:0", "-workers", "2")
	s.until("worker ready", nil)
	s.until("worker ready", nil)
	s.signal(unix.SIGHUP)
	s.next("roll complete")
	s.signal(unix.SIGTERM)
	if err := s.wait(); err != nil {
		t.Fatalf("the example exited with %v after SIGTERM", err)
	}
	s.reader.Wait()
	s.junkMu.Lock()
	defer s.junkMu.Unlock()
	drains := 0
	for i, line := range s.raw {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("line %d is not JSON: %q", i, line)
			continue
		}
		ts, _ := m["ts"].(string)
		level, _ := m["level"].(string)
		_, hasTime := m["time"]
		if len(ts) != len("2006-01-02T15:04:05.000Z") || level == "" || level != strings.ToLower(level) || m["msg"] == nil || hasTime {
			t.Errorf("line %d is not in handoff's format (ts ISO 8601, lowercase level, msg, no time): %q", i, line)
		}
		if m["msg"] == "worker: drain started" {
			drains++
			if d, ok := m["deadline"].(float64); !ok || d > 3600 {
				t.Errorf("line %d: the drain's deadline %v is no number of seconds", i, m["deadline"])
			}
		}
	}
	if drains == 0 {
		t.Errorf("no worker's drain line among %d lines: the workers' own lines were not checked", len(s.raw))
	}
}

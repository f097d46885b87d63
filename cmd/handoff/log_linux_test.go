//go:build linux

package main

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestOneLogFormat: a roll of the example worker under -log-format json or
// console gives one stream in one format. In JSON every line is an object
// with ts (ISO 8601, milliseconds), level (lowercase) and msg, and
// durations are numbers of seconds, the workers' drain lines included; in
// console mode every line has the one shape of the supervisor's lines.
func TestOneLogFormat(t *testing.T) {
	for _, format := range []string{"json", "console"} {
		t.Run(format, func(t *testing.T) { testOneLogFormat(t, format) })
	}
}

var (
	jsonTs       = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}(Z|[+-]\d{4})$`)
	consoleLine  = regexp.MustCompile(`^\d\d:\d\d:\d\d\.\d{3} (DEBUG|INFO |WARN |ERROR) \S.*?( [a-z_.]+=("([^"\\]|\\.)*"|[^ "]+))*$`)
	durationKeys = []string{"after", "took", "deadline", "delay", "retry_in", "timeout", "window", "kill_after", "ready_timeout", "for"}
)

func testOneLogFormat(t *testing.T, format string) {
	checkFds(t)
	ctl := filepath.Join(t.TempDir(), "ctl", "handoff.sock")
	// -stop-timeout 8s: the workers' drain deadline is 3/4 of it, 6 s.
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-listen", "tcp://127.0.0.1:0", "-control", ctl,
		"-stop-timeout", "8s", "-log-format", format, "--", bins.example, "-worker"})
	p.waitCount("worker ready", 2)
	mustCLI(t, "reload", "-control", ctl)
	p.waitCount("worker: drain started", 2) // the retired generation's workers
	p.waitCount("worker exited", 2)
	if code := p.stop(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
	lines := p.allLines()
	drains := 0
	for i, line := range lines {
		if strings.Contains(line, "worker: drain started") {
			drains++
		}
		if format == "console" {
			if !consoleLine.MatchString(line) {
				t.Errorf("line %d is not a console line: %q", i, line)
			} else if strings.Contains(line, "worker: drain started") && !strings.Contains(line, " deadline=6s") {
				t.Errorf("line %d: drain deadline not as the supervisor writes durations (deadline=6s): %q", i, line)
			}
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("line %d is not JSON (%v): %q", i, err, line)
			continue
		}
		ts, _ := m["ts"].(string)
		level, _ := m["level"].(string)
		msg, _ := m["msg"].(string)
		if !jsonTs.MatchString(ts) || msg == "" || !strings.Contains("debug info warn error", level) || level == "" {
			t.Errorf("line %d: ts %q, level %q, msg %q; want an ISO 8601 ts with milliseconds, a lowercase level and a msg: %q",
				i, m["ts"], m["level"], m["msg"], line)
		}
		if _, ok := m["time"]; ok {
			t.Errorf("line %d has a time key besides ts: %q", i, line)
		}
		for _, k := range durationKeys {
			v, ok := m[k]
			if !ok {
				continue
			}
			if s, ok := v.(float64); !ok || s < 0 || s > time.Hour.Seconds() {
				t.Errorf("line %d: duration %s = %v, want a number of seconds: %q", i, k, v, line)
			}
		}
		if msg == "worker: drain started" && m["deadline"] != 6.0 {
			t.Errorf("line %d: drain deadline %v, want 6 (seconds): %q", i, m["deadline"], line)
		}
	}
	if drains < 2 {
		t.Errorf("%d drain lines from the workers, want at least 2", drains)
	}
}

// waitCount waits until n output lines hold s.
func (p *proc) waitCount(s string, n int) {
	p.t.Helper()
	timeout := time.NewTimer(time.Until(deadline(p.t)))
	defer timeout.Stop()
	for {
		p.mu.Lock()
		seen := 0
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				seen++
			}
		}
		changed, eof := p.changed, p.eof
		p.mu.Unlock()
		if seen >= n {
			return
		}
		if eof {
			p.t.Fatalf("pid %d: output ended after %d lines with %q, want %d", p.pid, seen, s, n)
		}
		select {
		case <-changed:
		case <-timeout.C:
			p.t.Fatalf("pid %d: %d lines with %q in time, want %d", p.pid, seen, s, n)
		}
	}
}

// allLines waits for the end of the output and returns every line.
func (p *proc) allLines() []string {
	p.t.Helper()
	select {
	case <-p.readDone:
	case <-time.After(time.Until(deadline(p.t))):
		p.t.Fatalf("pid %d: output did not end in time", p.pid)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lines
}

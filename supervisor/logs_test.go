//go:build unix

package supervisor_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/supervisor"
)

func init() {
	// supervise-quietly is a supervisor configured with no logger, whose
	// workers (the "exit" helper) exit at start-up with status 3: it gives
	// up after two start failures and exits 1.
	helpers["supervise-quietly"] = func() int {
		exe, err := os.Executable()
		if err != nil {
			fmt.Println(err)
			return 2
		}
		s, err := supervisor.New(supervisor.Command{Path: exe, Env: exitingWorkerEnv()},
			supervisor.WithListen("127.0.0.1:0"),
			supervisor.WithMaxStartFailures(2),
			// However slow the machine, an exit is a start failure.
			supervisor.WithMinUptime(time.Hour),
			supervisor.WithBackoff(time.Millisecond, time.Millisecond))
		if err != nil {
			fmt.Println(err)
			return 2
		}
		if err := s.Run(context.Background()); err != nil {
			return 1
		}
		return 0
	}
}

// exitingWorkerEnv is the environment of an "exit" helper that exits with
// status 3, without the variable that made this process a helper.
func exitingWorkerEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, helperEnv+"=") {
			env = append(env, kv)
		}
	}
	return append(env, "GORACE=atexit_sleep_ms=0", helperEnv+"=exit", "TEST_EXIT_CODE=3")
}

// TestDefaultLogSaysWorkerExitedAtStartUp: a supervisor given no logger
// still says, on its stderr, that its worker exited at start-up and why,
// at a level a default user sees, without debug noise.
func TestDefaultLogSaysWorkerExitedAtStartUp(t *testing.T) {
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = workerEnv(helperEnv + "=supervise-quietly")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
		t.Fatalf("supervisor: %v, want exit status 1 (gave up); stderr:\n%s", err, stderr.String())
	}
	var exited, gaveUp bool
	for line := range strings.Lines(stderr.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("stderr is a pipe, so every line should be JSON: %q: %v; stderr:\n%s", line, err, stderr.String())
		}
		switch {
		case l["level"] == "debug":
			t.Errorf("debug line in the default log: %q", line)
		case l["msg"] == "worker died; restarting":
			if l["level"] != "warn" || l["start_failure"] != true || l["status"] != "exit status 3" {
				t.Errorf("exit logged as %q: want a warning, start_failure, exit status 3", line)
			}
			exited = true
		case l["msg"] == "too many start failures: stopping":
			gaveUp = true
		}
	}
	if !exited || !gaveUp {
		t.Fatalf("stderr of a supervisor with no logger does not say that the worker exited at start-up (%t) and that it gave up (%t):\n%s",
			exited, gaveUp, stderr.String())
	}
}

// TestSlogHandler: WithSlogHandler sends the supervisor's log to a
// log/slog handler, levels and fields kept.
func TestSlogHandler(t *testing.T) {
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var buf lockedBuffer
	s, err := supervisor.New(supervisor.Command{Path: exe, Env: exitingWorkerEnv()},
		supervisor.WithListen("127.0.0.1:0"),
		supervisor.WithMaxStartFailures(2),
		supervisor.WithMinUptime(time.Hour),
		supervisor.WithBackoff(time.Millisecond, time.Millisecond),
		supervisor.WithSlogHandler(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Run(ctx); err == nil || !strings.Contains(err.Error(), "failed to start 2 times") {
		t.Fatalf("Run: %v, want it to give up after 2 start failures", err)
	}
	var levels []string
	exited := 0
	for line := range strings.Lines(buf.String()) {
		var l map[string]any
		if err := json.Unmarshal([]byte(line), &l); err != nil {
			t.Fatalf("slog's JSON handler wrote %q: %v", line, err)
		}
		levels = append(levels, fmt.Sprint(l["level"]))
		if l["msg"] == "worker died; restarting" {
			if l["level"] != "WARN" || l["start_failure"] != true || l["status"] != "exit status 3" || l["worker"] != 0.0 {
				t.Errorf("exit logged as %q: want WARN, worker 0, start_failure, exit status 3", line)
			}
			exited++
		}
	}
	if exited == 0 || !strings.Contains(buf.String(), `"level":"ERROR","msg":"too many start failures: stopping"`) {
		t.Fatalf("the slog handler got no exit warning or no giving-up error:\n%s", buf.String())
	}
	for _, l := range levels {
		if l != "WARN" && l != "ERROR" {
			t.Fatalf("level %s got past a handler at WARN:\n%s", l, buf.String())
		}
	}
}

// lockedBuffer is a bytes.Buffer safe for a writer and a reader.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

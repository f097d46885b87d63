//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestScalePauseAndRelative: scale 0 pauses (every worker retires, the
// socket stays), scale +2 and scale -1 change the number from what it is.
func TestScalePauseAndRelative(t *testing.T) {
	checkFds(t)
	ctl := filepath.Join(t.TempDir(), "ctl", "handoff.sock")
	p := startProc(t, bins.handoff, []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0", "-control", ctl,
		"-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	_, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)

	mustCLI(t, "scale", "0", "-control", ctl)
	_, from = p.waitMsg(from, "worker exited")
	if st := statusJSON(t, "-control", ctl); len(st.Workers) != 0 {
		t.Fatalf("after scale 0: workers %v, want none", workerPids(st))
	}
	if out := mustCLI(t, "scale", "+2", "-control", ctl); !strings.Contains(out, "scaling by +2") {
		t.Errorf("scale +2 said %q", out)
	}
	_, from = p.waitReady(from, 2, 1)
	mustCLI(t, "scale", "-control", ctl, "-1") // the change may follow the flags
	p.waitMsg(from, "worker exited")
	if st := statusJSON(t, "-control", ctl); len(st.Workers) != 1 {
		t.Fatalf("after scale -1: workers %v, want 1", workerPids(st))
	}
	if _, errs, code := cli(t, "scale", "-5", "-control", ctl); code != 1 || !strings.Contains(errs, "only 1 workers") {
		t.Errorf("scale -5 of 1: exit %d, %q", code, errs)
	}
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestWorkerSettingsFlags: -env and -chdir reach the worker; -max-lifetime
// with -lifetime-jitter recycles it, and -surge, -min-uptime and -backoff
// are taken.
func TestWorkerSettingsFlags(t *testing.T) {
	checkFds(t)
	dir := t.TempDir()
	p := startProc(t, bins.handoff, []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0",
		"-env", "APP_ENV=production", "-env", "EMPTY=", "-chdir", dir,
		"-max-lifetime", "2s", "-lifetime-jitter", "100ms", "-surge", "2", "-min-uptime", "100ms",
		"-backoff", "50ms", "-backoff-max", "1s", "-log-format", "json", "--", testExe(t)}, helperEnv+"=echo")
	l, from := p.waitMsg(0, "listening")
	pids, from := p.waitReady(from, 1, 1)
	c := dialEcho(t, l.Addr)
	for q, want := range map[string]string{"env APP_ENV": "production", "env EMPTY": ""} {
		if _, got, err := c.ask(q); err != nil || got != want {
			t.Errorf("worker asked %q: %q, %v; want %q", q, got, err, want)
		}
	}
	c.Close()
	if cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pids[0])); err != nil || cwd != dir {
		t.Errorf("worker's directory %q, %v; want %s", cwd, err, dir)
	}
	_, from = p.waitMsg(from, "recycling worker at its maximum lifetime")
	p.waitReady(from, 1, 1)
	if code := p.stop(); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestGunicornBadAppRollsBack is the deploy that used to be an outage:
// gunicorn without --preload, whose arbiter says READY=1 before its worker
// imports the app, gets a broken app.py and a reload. Under clients that
// never retry, no request fails; the canary dies within the accept window,
// so "handoff reload" exits 1 naming why; the old workers serve on,
// generation 1; a fixed app.py then rolls cleanly.
func TestGunicornBadAppRollsBack(t *testing.T) {
	gunicorn, err := exec.LookPath("gunicorn")
	if err != nil {
		t.Skip("gunicorn is not installed: apt-get install gunicorn (.ci/run installs it)")
	}
	checkFds(t)
	dir := t.TempDir()
	app := filepath.Join(dir, "app.py")
	if err := os.WriteFile(app, []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	ctl := filepath.Join(dir, "ctl", "handoff.sock")
	// The window must cover the time gunicorn's worker takes to import the
	// app after the arbiter's READY=1: well under a second on a quiet
	// machine, seconds on this shared one.
	p := startProc(t, bins.handoff, []string{"-workers", "2", "-ready", "notify", "-accept-window", "10s", "-listen", "tcp://127.0.0.1:0",
		"-control", ctl, "-log-format", "json", "--", gunicorn, "--workers", "1", "--chdir", dir, "app:app"})
	l, from := p.waitMsg(0, "listening")
	gen1, _ := p.waitReady(from, 2, 1)
	p.waitLine("Listening at: http://" + l.Addr)
	// Both arbiters' workers have imported the good app once each has
	// answered: an arbiter whose worker is still booting when app.py
	// changes would import the broken one (gunicorn's hazard, not the
	// roll's).
	answered := map[string]bool{}
	for len(answered) < 2 {
		answered[get(t, "tcp", l.Addr).Header.Get("X-Arbiter")] = true
	}

	ld := startHTTPLoad("tcp", l.Addr, 8, "X-Arbiter")
	ld.more(t, 50)
	if err := os.WriteFile(app, []byte("import nonexistent_module\n"+wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code := cli(t, "reload", "-control", ctl)
	if code != 1 || !strings.Contains(errs, "roll to generation 2") || !strings.Contains(errs, "within the accept window") {
		t.Fatalf("reload of a broken app: exit %d, stdout %q, stderr %q; want 1 and why", code, out, errs)
	}
	t.Cleanup(func() {
		if t.Failed() { // the supervisor's whole log, not only its tail
			p.mu.Lock()
			defer p.mu.Unlock()
			for _, l := range p.lines {
				if strings.Contains(l, `"msg"`) || strings.Contains(l, "[INFO]") || strings.Contains(l, "[WARNING]") {
					t.Log(l)
				}
			}
		}
	})
	st := statusJSON(t, "-control", ctl)
	slices.Sort(gen1)
	if st.Generation != 1 || !slices.Equal(slices.Sorted(slices.Values(workerPids(st))), gen1) || st.LastRoll == nil || !strings.Contains(st.LastRoll.Error, "accept window") {
		t.Fatalf("after the failed reload: generation %d, workers %v, last roll %+v; want 1, %v as before",
			st.Generation, workerPids(st), st.LastRoll, gen1)
	}
	ld.more(t, 50) // the old generation serves on

	if err := os.WriteFile(app, []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	out, errs, code = cli(t, "reload", "-control", ctl)
	if code != 0 || !strings.Contains(out, "rolled to generation 3") {
		t.Fatalf("reload of the fixed app: exit %d, %q %q; want 0, generation 3", code, out, errs)
	}
	st = statusJSON(t, "-control", ctl)
	if st.Generation != 3 || len(st.Workers) != 2 || slices.ContainsFunc(workerPids(st), func(pid int) bool { return slices.Contains(gen1, pid) }) {
		t.Fatalf("after the fixed reload: generation %d, workers %v (old %v)", st.Generation, workerPids(st), gen1)
	}
	ld.more(t, 50)
	ok, failed, fails, _ := ld.finish()
	t.Logf("%d requests through a failed and a good reload, %d failed", ok, failed)
	if failed > 0 {
		t.Errorf("%d of %d requests failed: %q", failed, ok+failed, fails)
	}
	p.cmd.Process.Signal(unix.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("handoff exited with %d after SIGTERM, want 0", code)
	}
}

//go:build linux

package e2e

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestBadBuild: three bad builds of the example's own binary, each renamed
// over the supervisor's path and rolled to (SIGHUP) under 32 keep-alive
// clients that never retry: one whose workers crash at start, one whose
// workers are never ready, one whose workers exit within the accept window
// after they were ready. Each roll is rolled back within the ready timeout
// plus the window plus 1s; every worker then runs the previous build, by
// its very binary (the one renamed away: the generation kept it open), and
// every response says v1. A good v3 then rolls. No request fails over the
// whole run, and SIGTERM stops everything with status 0.
func TestBadBuild(t *testing.T) {
	const (
		readyTimeout = 2 * time.Second
		window       = time.Second
		workers      = 2
		clients      = 32
	)
	bins := buildVariants(t, map[string]string{
		"v1":    "-X main.version=v1",
		"crash": "-X main.version=v2 -X main.fault=crash",
		"hang":  "-X main.version=v2 -X main.fault=hang",
		"flap":  "-X main.version=v2 -X main.fault=flap",
		"v3":    "-X main.version=v3",
	})
	path := filepath.Join(t.TempDir(), "server")
	install(t, bins["v1"], path)
	sup := startSupervisor(t, path, nil, "-listen", "127.0.0.1:0", "-workers", fmt.Sprint(workers),
		"-ready-timeout", readyTimeout.String(), "-accept-window", window.String(), "-stop-timeout", "10s")
	for range workers {
		sup.next("worker ready")
	}
	l := startLoad(t, sup.addr, clients)
	finished := false
	finish := func() {
		if finished {
			return
		}
		finished = true
		l.finish()
		ok, failed := l.count()
		t.Logf("%d requests, %d failed; versions %v", ok+failed, failed, l.versions)
		if failed > 0 || ok == 0 {
			t.Errorf("%d of %d requests failed: %q", failed, ok+failed, l.errs)
		}
	}
	defer finish()
	l.waitRequests(t, 200)

	versions := func() map[string]int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return maps.Clone(l.versions)
	}
	// checkServing waits until the workers of every generation but gen have
	// exited, then checks that the workers run gen from the binary bin,
	// that new connections are served by version, and that the load's
	// responses since since (nil: since the old workers exited) and over 200
	// more requests all came from version. With since nil, each client may
	// still record the one response an old worker sent it before exiting.
	checkServing := func(what string, gen uint64, bin, version string, since map[string]int) {
		t.Helper()
		for pid, g := range startedWorkers(sup.seen) {
			if g != gen {
				waitGone(t, pid)
			}
		}
		stale := 0
		if since == nil {
			since, stale = versions(), clients
		}
		want, err := os.Stat(bin)
		if err != nil {
			t.Fatal(err)
		}
		var live []int
		for pid, g := range startedWorkers(sup.seen) {
			if !running(pid) {
				continue
			}
			live = append(live, pid)
			exe, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
			if g != gen || err != nil || !os.SameFile(exe, want) {
				t.Errorf("%s: worker %d runs generation %d (want %d), binary %v (want %s's)", what, pid, g, gen, err, version)
			}
		}
		if len(live) != workers {
			t.Errorf("%s: %d workers %v running, want %d", what, len(live), live, workers)
		}
		for range 10 {
			if v := versionOf(t, sup.addr); v != version {
				t.Errorf("%s: a new connection served by version %q", what, v)
			}
		}
		l.waitRequests(t, 200)
		others := map[string]int{}
		for v, n := range versions() {
			if v != version && n > since[v] {
				others[v] = n - since[v]
				stale -= n - since[v]
			}
		}
		if stale < 0 {
			t.Errorf("%s: responses from other versions: %v", what, others)
		}
	}

	// restartOne stops a serving worker: it is restarted in its generation,
	// from its binary, not the bad one now at the path. SIGTERM: it drains.
	restartOne := func(what string) {
		t.Helper()
		var victim logLine
		for _, ll := range sup.seen {
			if ll.Msg == "worker ready" && ll.Generation == 1 && running(ll.Pid) {
				victim = ll
			}
		}
		if victim.Pid <= 1 {
			t.Fatalf("%s: no serving worker of generation 1", what)
		}
		since := versions()
		if err := syscall.Kill(victim.Pid, syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		started := sup.until("worker started", func(ll logLine) bool { return ll.Worker == victim.Worker })
		pid := started[len(started)-1].Pid
		out := sup.untilAny(func(ll logLine) bool {
			switch ll.Msg {
			case "worker ready", "worker died; restarting", "worker not ready in time: killing":
				return ll.Pid == pid
			}
			return false
		})
		if ll := out[len(out)-1]; ll.Msg != "worker ready" {
			t.Fatalf("%s: the restart of worker %d in slot %d: %q", what, victim.Pid, victim.Worker, ll.Msg)
		}
		checkServing(what+", after a restart", 1, bins["v1"], "v1", since)
	}

	bound := readyTimeout + window + time.Second
	for _, fault := range []string{"crash", "hang", "flap"} {
		install(t, bins[fault], path)
		since := versions()
		start := time.Now()
		sup.signal(syscall.SIGHUP)
		end := sup.untilAny(rollEnded)
		took := time.Since(start)
		last := end[len(end)-1]
		t.Logf("%s: %q after %v: %s", fault, last.Msg, took.Round(time.Millisecond), last.Error)
		if last.Msg != "roll failed; the previous generation keeps serving" {
			t.Fatalf("%s: the roll ended with %q, want it rolled back", fault, last.Msg)
		}
		if took > bound {
			t.Errorf("%s: the roll took %v to roll back, want at most %v (ready timeout + window + 1s)", fault, took, bound)
		}
		checkServing(fault, 1, bins["v1"], "v1", since)
		restartOne(fault)
	}

	// An in-place upgrade of the supervisor (to v3, renamed over its path)
	// hands the generations' pinned binaries over: after it, a bad build's
	// roll still rolls back, and a restart still runs v1.
	install(t, bins["v3"], path)
	sup.signal(syscall.SIGUSR2)
	sup.next("supervisor upgraded in place")
	install(t, bins["crash"], path)
	sup.signal(syscall.SIGHUP)
	if end := sup.untilAny(rollEnded); end[len(end)-1].Msg != "roll failed; the previous generation keeps serving" {
		t.Fatalf("after the upgrade: the roll to the crashing build ended with %q", end[len(end)-1].Msg)
	}
	restartOne("after the upgrade")

	// A good build rolls, and serves.
	install(t, bins["v3"], path)
	sup.signal(syscall.SIGHUP)
	done := sup.untilAny(rollEnded)
	last := done[len(done)-1]
	if last.Msg != "roll complete" {
		t.Fatalf("v3: the roll ended with %q: %s", last.Msg, last.Error)
	}
	checkServing("v3", last.Generation, bins["v3"], "v3", nil)

	finish()
	pids := startedWorkers(sup.seen)
	sup.signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Fatalf("supervisor after SIGTERM: %v, want exit status 0", err)
	}
	for pid := range pids {
		if running(pid) {
			t.Errorf("worker %d outlived its supervisor", pid)
		}
	}
}

// rollEnded matches the log line of a roll's end.
func rollEnded(l logLine) bool {
	switch l.Msg {
	case "roll complete", "roll failed; the previous generation keeps serving", "roll failed, and so did the rollback":
		return true
	}
	return false
}

// buildVariants builds the example once per entry of ldflags, all at once,
// and returns the binaries by name.
func buildVariants(t *testing.T, ldflags map[string]string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	bins := make(map[string]string, len(ldflags))
	errs := make(map[string]error, len(ldflags))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for name, flags := range ldflags {
		bin := filepath.Join(dir, name)
		bins[name] = bin
		wg.Go(func() {
			out, err := exec.Command("go", "build", "-ldflags", flags, "-o", bin, module+"example").CombinedOutput()
			if err != nil {
				mu.Lock()
				errs[name] = fmt.Errorf("%w: %s", err, out)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	for name, err := range errs {
		t.Fatalf("building the example %s: %v", name, err)
	}
	return bins
}

// install puts a hard link of bin at path by a rename, as an install would:
// what ran from path keeps its file.
func install(t *testing.T, bin, path string) {
	t.Helper()
	tmp := path + ".new"
	os.Remove(tmp)
	if err := os.Link(bin, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startedWorkers returns the generation of every worker the log lines say
// was started, by pid.
func startedWorkers(lines []logLine) map[int]uint64 {
	gens := map[int]uint64{}
	for _, l := range lines {
		if l.Msg == "worker started" {
			gens[l.Pid] = l.Generation
		}
	}
	return gens
}

// versionOf makes one request on a new connection and returns its
// X-Version.
func versionOf(t *testing.T, addr string) string {
	t.Helper()
	resp, err := noKeepAlive.Get("http://" + addr + "/")
	if err != nil {
		t.Fatalf("GET: %v", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET: status %d", resp.StatusCode)
	}
	return resp.Header.Get("X-Version")
}

// running reports whether pid is a process that has not exited.
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] != 'Z'
}

// waitGone waits until pid has exited, on its pidfd, until the test's
// deadline.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if errors.Is(err, unix.ESRCH) {
		return
	}
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	for running(pid) {
		ms := int(time.Until(deadline(t)).Milliseconds())
		if ms <= 0 {
			t.Fatalf("worker %d still running at the test's deadline", pid)
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, ms); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("poll pidfd of %d: %v", pid, err)
		}
	}
}

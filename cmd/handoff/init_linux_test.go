//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// inNamespace returns the command line that runs handoff with args as PID 1
// of a new pid namespace with its own /proc, as a container runtime would.
// It skips t where that cannot be done (not root).
func inNamespace(t *testing.T, args ...string) (string, []string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("a pid namespace needs root (unshare --pid)")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Fatal("unshare (util-linux) is not installed:", err)
	}
	// --kill-child: if the test kills unshare, handoff gets SIGTERM.
	return unshare, append([]string{"--pid", "--fork", "--mount-proc", "--kill-child=SIGTERM", bins.handoff}, args...)
}

// nsInit waits for the child of the unshare process p, which is PID 1 of
// the namespace, and returns its pid as the test sees it.
func nsInit(t *testing.T, p *proc) int {
	t.Helper()
	end := deadline(t)
	for {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid, p.pid))
		if f := strings.Fields(string(b)); len(f) > 0 {
			return atoi(f[0])
		}
		select {
		case <-p.exited:
			t.Fatalf("unshare exited with %d before its child appeared", p.state.ExitCode())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(end) {
			t.Fatal("no child of unshare in time")
		}
	}
}

// procKids returns the children of pid, as the test sees them, with their
// state letter (R, S, Z…) and command name.
func procKids(pid int) map[int]string {
	out := map[int]string{}
	for _, c := range childrenOf(pid) {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(stat)
		open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
		if open < 0 || end < open || end+3 > len(s) {
			continue
		}
		out[c] = s[end+2:end+3] + " " + s[open+1:end]
	}
	return out
}

// nsPid returns the pid of pid in its innermost pid namespace.
func nsPid(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 1 && f[0] == "NSpid:" {
			return atoi(f[len(f)-1])
		}
	}
	return 0
}

// procState returns the state letter of pid (R, S, Z…), "" if it is gone.
func procState(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+3 <= len(s) {
		return s[i+2 : i+3]
	}
	return ""
}

// childrenOf returns the pids whose parent is pid.
func childrenOf(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c))
		if err != nil {
			continue
		}
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == strconv.Itoa(pid) {
			pids = append(pids, c)
		}
	}
	return pids
}

// orphanScript starts a shell that starts n sleeps of a second and exits
// at once, so they are orphans, and says "orphans started" when it is done;
// meanwhile the worker becomes the echo helper.
func orphanScript(n int) string {
	return fmt.Sprintf(`sh -c 'i=0; while [ $i -lt %d ]; do sleep 1 & i=$((i+1)); done; echo orphans started' & exec "$0"`, n)
}

// orphanCount is how many orphans TestInitReapsOrphans makes in all:
// $HANDOFF_ORPHANS, or 200 (forks are slow on a busy machine; the issue's
// figure is 1000).
func orphanCount(t *testing.T) int {
	if s := os.Getenv("HANDOFF_ORPHANS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 2 {
			t.Fatalf("HANDOFF_ORPHANS=%q: want a whole number of at least 2", s)
		}
		return n
	}
	return 200
}

// TestInitReapsOrphans runs handoff as PID 1 of a pid namespace, with no
// flag: it must see that it is PID 1 and reap every orphan. Its two workers
// leave orphans (200, or $HANDOFF_ORPHANS) that live a second: once they
// have exited, none stays a zombie. SIGTERM to PID 1 stops everything, with
// exit code 0.
func TestInitReapsOrphans(t *testing.T) {
	checkFds(t)
	n := orphanCount(t)
	bin, args := inNamespace(t, "-workers", "2", "-ready", "notify", "-ready-timeout", "5m", "-listen", "tcp://127.0.0.1:0",
		"-stop-timeout", "20s", "-log-format", "json", "--", "/bin/sh", "-c", orphanScript(n/2), testExe(t))
	p := startProc(t, bin, args, helperEnv+"=echo")
	init := nsInit(t, p)
	_, from := p.waitMsg(0, "listening")
	workers, _ := p.waitReady(from, 2, 1)
	t.Logf("handoff is pid %d outside its namespace; workers %v", init, workers)
	waitLines(t, p, "orphans started", 2)
	started := time.Now()

	// Every orphan was re-parented to handoff and exits a second after it
	// started: wait until handoff has no children but its workers.
	var last map[int]string
	maxZombies := 0
	end := deadline(t)
	for {
		kids := procKids(init)
		zombies := 0
		for _, s := range kids {
			if strings.HasPrefix(s, "Z") {
				zombies++
			}
		}
		maxZombies = max(maxZombies, zombies)
		for pid := range kids {
			if slices.Contains(workers, nsPid(pid)) || treeUnder(init)[pid] == "handoff-janitor" {
				delete(kids, pid)
			}
		}
		if len(kids) == 0 {
			break
		}
		last = kids
		if time.Now().After(end) {
			zombies := 0
			for _, s := range last {
				if strings.HasPrefix(s, "Z") {
					zombies++
				}
			}
			t.Fatalf("%d children of PID 1 besides its workers, %d of them zombies, e.g. %v", len(last), zombies, firstOf(last))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d orphans gone %v after the last one started (each lives 1s); at most %d zombies seen at once",
		n, time.Since(started).Round(time.Millisecond), maxZombies)

	syscall.Kill(init, syscall.SIGTERM)
	if code := p.wait(); code != 0 {
		t.Errorf("PID 1 exited with %d after SIGTERM, want 0", code)
	}
}

// waitLines waits until n output lines hold s.
func waitLines(t *testing.T, p *proc, s string, n int) {
	t.Helper()
	end := deadline(t)
	for {
		p.mu.Lock()
		got := 0
		for _, l := range p.lines {
			if strings.Contains(l, s) {
				got++
			}
		}
		changed := p.changed
		p.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-changed:
		case <-time.After(time.Until(end)):
			t.Fatalf("%d of %d lines with %q in time", got, n, s)
		}
	}
}

func firstOf(m map[int]string) string {
	for pid, s := range m {
		return fmt.Sprintf("pid %d (%s)", pid, s)
	}
	return ""
}

// treeScript starts, in the worker, a child that called setsid, an orphan
// (double-forked) and, when stubborn, a setsid'd child that ignores SIGTERM;
// each prints its pid; then it becomes the echo helper.
func treeScript(stubborn bool) string {
	s := `setsid sleep 1000 & echo "tree setsid $!"; (sleep 1000 & echo "tree orphan $!"); `
	if stubborn {
		s += `setsid sh -c 'trap "" TERM; exec sleep 1000' & echo "tree stubborn $!"; `
	}
	return s + `exec "$0"`
}

// treePids waits for the n "tree" lines of the workers and returns their
// pids.
func treePids(t *testing.T, p *proc, n int) []int {
	t.Helper()
	var pids []int
	for {
		p.mu.Lock()
		pids = pids[:0]
		for _, l := range p.lines {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "tree" {
				pids = append(pids, atoi(f[2]))
			}
		}
		changed := p.changed
		p.mu.Unlock()
		if len(pids) >= n {
			return pids
		}
		select {
		case <-changed:
		case <-time.After(time.Until(deadline(t))):
			t.Fatalf("only %d of %d tree pids in time", len(pids), n)
		}
	}
}

// TestStopKillsWorkerTrees: a worker that leaves a setsid'd child and a
// double-forked orphan behind. After a stop nothing of its tree is alive:
// handoff -init (a subreaper) finds the orphan, and the setsid'd child by
// its parent; plain handoff finds the setsid'd child (its parent is alive
// when the stop begins). The test process is a subreaper too: whatever
// handoff left would become its child, which the strict stop reports.
func TestStopKillsWorkerTrees(t *testing.T) {
	for _, init := range []bool{true, false} {
		t.Run(fmt.Sprintf("init=%v", init), func(t *testing.T) {
			checkFds(t)
			args := []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0", "-stop-timeout", "20s", "-log-format", "json"}
			if init {
				args = append(args, "-init")
			}
			script := treeScript(false)
			if !init {
				// The /proc view: cgroups would find a setsid'd orphan too
				// (TestCgroupsStopWholeTree).
				args = append(args, "-cgroups", "off")
				// Without a subreaper an orphan escapes to whoever reaps
				// for the session: only the setsid'd child is handoff's to stop.
				script = `setsid sleep 1000 & echo "tree setsid $!"; exec "$0"`
			}
			p := startProc(t, bins.handoff, append(args, "--", "/bin/sh", "-c", script, testExe(t)), helperEnv+"=echo")
			_, from := p.waitMsg(0, "listening")
			p.waitReady(from, 1, 1)
			n := 1
			if init {
				n = 2
			}
			tree := treePids(t, p, n)
			var code int
			if init {
				code = p.stop() // and nothing may be left, not even a zombie
			} else {
				// The setsid'd child is the worker's: killed, it stays a
				// zombie until its parent exits and the test (a subreaper)
				// inherits it. Dead is what counts.
				p.cmd.Process.Signal(syscall.SIGTERM)
				code = p.wait()
			}
			if code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			for _, pid := range tree {
				if state := procState(pid); state != "" && state != "Z" {
					t.Errorf("pid %d of the worker's tree is alive after the stop (state %s)", pid, state)
				}
			}
		})
	}
}

// TestCgroupsStopWholeTree: -cgroups on, no -init. Every process of the
// worker's tree is in the worker's cgroup, and all are gone after a stop
// with a 2 s timeout, handoff exiting 0: a setsid'd child, an orphan, a
// setsid'd child that ignores SIGTERM, and a daemon (double-forked,
// setsid'd, ignoring SIGTERM) that neither parent nor process group links
// to the worker, which the /proc view cannot find. -cgroups off says it
// uses /proc.
func TestCgroupsStopWholeTree(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root or a delegated cgroup")
	}
	for _, mode := range []string{"on", "off"} {
		t.Run(mode, func(t *testing.T) {
			checkFds(t)
			script := `(setsid sh -c 'trap "" TERM; exec sleep 1000' & echo "tree daemon $!"); ` + treeScript(true)
			p := startProc(t, bins.handoff, []string{"-ready", "notify", "-listen", "tcp://127.0.0.1:0", "-stop-timeout", "2s",
				"-log-format", "json", "-cgroups", mode, "--", "/bin/sh", "-c", script, testExe(t)}, helperEnv+"=echo")
			if mode == "off" {
				p.waitMsg(0, "workers' trees: tracked through /proc")
				p.waitMsg(0, "listening")
				p.cmd.Process.Signal(syscall.SIGTERM)
				p.wait()
				return
			}
			p.waitMsg(0, "workers' trees: a cgroup per worker")
			_, from := p.waitMsg(0, "listening")
			p.waitReady(from, 1, 1)
			tree := treePids(t, p, 4)
			t.Cleanup(func() {
				for _, pid := range tree { // whatever the outcome; only a process still in the tree's cgroup
					if strings.Contains(readFile("/proc/"+strconv.Itoa(pid)+"/cgroup"), "/handoff-") {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			})
			p.cmd.Process.Signal(syscall.SIGTERM) // killed, the orphans are zombies of the test (a subreaper) for a while
			if code := p.wait(); code != 0 {
				t.Errorf("exit code %d after SIGTERM, want 0", code)
			}
			for _, pid := range tree {
				if state := procState(pid); state != "" && state != "Z" {
					t.Errorf("pid %d of the worker's tree is alive after the stop (state %s)", pid, state)
				}
			}
		})
	}
}

func readFile(name string) string {
	b, _ := os.ReadFile(name)
	return string(b)
}

// TestInitStopsStubbornTree: as PID 1, a tree with a setsid'd child, an
// orphan, and a setsid'd child that ignores SIGTERM. On SIGTERM the first
// two get the stop signal and exit; the stubborn one gets SIGKILL at the
// stop timeout; handoff exits 0 once all are gone.
func TestInitStopsStubbornTree(t *testing.T) {
	checkFds(t)
	bin, args := inNamespace(t, "-ready", "notify", "-listen", "tcp://127.0.0.1:0", "-stop-timeout", "2s",
		"-log-format", "json", "--", "/bin/sh", "-c", treeScript(true), testExe(t))
	p := startProc(t, bin, args, helperEnv+"=echo")
	init := nsInit(t, p)
	_, from := p.waitMsg(0, "listening")
	_, from = p.waitReady(from, 1, 1)
	treePids(t, p, 3)
	syscall.Kill(init, syscall.SIGTERM)
	l, from := p.waitMsg(from, "processes of the workers' trees did not exit in time: killing")
	if l.Processes != 1 {
		t.Errorf("%d processes killed at the stop timeout, want 1 (the one that ignores SIGTERM)", l.Processes)
	}
	p.waitMsg(from, "stopped")
	if code := p.wait(); code != 0 {
		t.Errorf("PID 1 exited with %d after SIGTERM, want 0", code)
	}
}

// TestInitExitCodes: how handoff exits, as PID 1, when it gives up on a
// worker that keeps failing: with the worker's exit code, 128+n when signal n
// killed it, and through -remap-exit.
func TestInitExitCodes(t *testing.T) {
	for _, c := range []struct {
		name   string
		script string
		extra  []string
		want   int
	}{
		{"exit code", "exit 3", nil, 3},
		{"signal", "kill -USR1 $$", nil, 128 + int(syscall.SIGUSR1)},
		{"remapped", "exit 3", []string{"-remap-exit", "3=0"}, 0},
		{"exit 0 too soon", "exit 0", nil, 1},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkFds(t)
			args := append([]string{"-listen", "tcp://127.0.0.1:0", "-max-start-failures", "2", "-backoff", "10ms",
				"-log-format", "json"}, c.extra...)
			bin, args := inNamespace(t, append(args, "--", "/bin/sh", "-c", c.script)...)
			p := startProc(t, bin, args)
			p.waitMsg(0, "handoff exits")
			if code := p.wait(); code != c.want {
				t.Errorf("exit code %d, want %d", code, c.want)
			}
		})
	}
}

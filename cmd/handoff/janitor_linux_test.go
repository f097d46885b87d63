//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// treeUnder returns the descendants of pid with their argv[0], as the test
// sees them.
func treeUnder(pid int) map[int]string {
	out := map[int]string{}
	var walk func(p int)
	walk = func(p int) {
		for _, c := range childrenOf(p) {
			if _, ok := out[c]; ok {
				continue
			}
			cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", c))
			arg0, _, _ := bytes.Cut(cmdline, []byte{0})
			out[c] = string(arg0)
			walk(c)
		}
	}
	walk(pid)
	return out
}

// upgradeCount is how many upgrades TestKill9StopsGunicorn makes before the
// kill: $HANDOFF_UPGRADES, or 20.
func upgradeCount(t *testing.T) int {
	if s := os.Getenv("HANDOFF_UPGRADES"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			t.Fatalf("HANDOFF_UPGRADES=%q: want a whole number", s)
		}
		return n
	}
	return 20
}

// TestKill9StopsGunicorn: kill -9 of handoff supervising Debian's gunicorn
// (an arbiter and two workers of its own per handoff worker) takes every
// gunicorn process with it, through the janitor; none is lost to the
// upgrades in place before that. A new handoff then starts on the same port
// and pid file.
func TestKill9StopsGunicorn(t *testing.T) {
	gunicorn, err := exec.LookPath("gunicorn")
	if err != nil {
		t.Skip("gunicorn is not installed: apt-get install gunicorn (.ci/run installs it)")
	}
	checkFds(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "app.py"), []byte(wsgiApp), 0o644); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(dir, "handoff.pid")
	args := func(listen string) []string {
		return []string{"-workers", "2", "-ready", "notify", "-listen", listen, "-pidfile", pidfile,
			"-log-format", "json", "--", gunicorn, "--workers", "2", "--chdir", dir, "app:app"}
	}
	p := startProc(t, bins.handoff, args("tcp://127.0.0.1:0"))
	gunicorns := func(p *proc) []int {
		var pids []int
		for pid, arg0 := range treeUnder(p.pid) {
			if arg0 != "handoff-janitor" {
				pids = append(pids, pid)
			}
		}
		slices.Sort(pids)
		return pids
	}
	// The gunicorn workers are forked after READY=1: wait for all six.
	all := func(p *proc) []int {
		end := deadline(t)
		for {
			tree := gunicorns(p)
			if len(tree) == 6 {
				return tree
			}
			if time.Now().After(end) {
				t.Fatalf("gunicorn processes under handoff: %v, want 6", tree)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	l, from := p.waitMsg(0, "listening")
	addr := l.Addr
	arbiters, from := p.waitReady(from, 2, 1)

	tree := all(p)
	end := deadline(t)
	get(t, "tcp", addr)

	n := upgradeCount(t)
	for range n {
		p.cmd.Process.Signal(syscall.SIGUSR2)
		_, from = p.waitMsg(from, "handoff resuming after an upgrade in place")
	}
	if n > 0 {
		get(t, "tcp", addr)
		if after := gunicorns(p); !slices.Equal(after, tree) {
			t.Fatalf("gunicorn processes %v before %d upgrades, %v after", tree, n, after)
		}
	}

	p.cmd.Process.Signal(syscall.SIGKILL)
	killed := time.Now()
	p.wait()
	for {
		var alive []int
		for _, pid := range tree {
			if s := procState(pid); s != "" && s != "Z" {
				alive = append(alive, pid)
			}
		}
		if len(alive) == 0 {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("gunicorn processes %v of %v still alive after kill -9 of handoff", alive, tree)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("%d upgrades, then kill -9: %d gunicorn processes (arbiters %v) gone within %v",
		n, len(tree), arbiters, time.Since(killed).Round(time.Millisecond))

	waitJanitor(t)          // it removes the cgroups once the workers are gone
	reapLeftovers(t, false) // the zombies of the first handoff's tree

	// The port and the pid file are free for the next handoff.
	// (-init: stopped while it boots, a gunicorn worker loses the SIGTERM
	// and is killed at the stop timeout, and then its zombie is handoff's.)
	p2 := startProc(t, bins.handoff, append([]string{"-init", "-stop-timeout", "5s"}, args("tcp://"+addr)...))
	_, from = p2.waitMsg(0, "listening")
	p2.waitReady(from, 2, 1)
	all(p2)
	get(t, "tcp", addr)
	if pid, err := readPidfile(pidfile); err != nil || pid != p2.pid {
		t.Errorf("pid file: %d, %v; want %d", pid, err, p2.pid)
	}
	if code := p2.stop(); code != 0 {
		t.Errorf("the second handoff exited with %d after SIGTERM, want 0", code)
	}
}

// TestKill9StopsWorkersGracefully: when handoff dies without stopping its
// workers (kill -9 here; a SIGTERM in an upgrade's exec window is the other
// way), the janitor stops a worker that knows nothing of handoff the way
// handoff would have, with its stop signal: a shell that traps SIGTERM
// exits 0 from its trap, and is not SIGKILLed.
func TestKill9StopsWorkersGracefully(t *testing.T) {
	checkFds(t)
	script := `trap 'exit 0' TERM; echo trap""ped; while :; do sleep 0.05; done` // not "trapped" in handoff's log
	p := startProc(t, bins.handoff, []string{"-workers", "1", "-ready", "start", "-listen", "tcp://127.0.0.1:0",
		"-log-format", "json", "--", "/bin/sh", "-c", script})
	_, from := p.waitMsg(0, "listening")
	pids, _ := p.waitReady(from, 1, 1)
	p.waitLine("trapped") // ready at once (-ready start): the trap is set only now
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait()
	// The orphaned shell is now this process's child (a subreaper).
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pids[0], &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			t.Fatalf("waiting for the orphaned worker %d: %v", pids[0], err)
		}
		break
	}
	if !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("worker %d after kill -9 of handoff: %v, want exit status 0 from its SIGTERM trap", pids[0], describe(ws))
	}
	waitJanitor(t)
	reapLeftovers(t, false)
}

func describe(ws syscall.WaitStatus) string {
	if ws.Signaled() {
		return fmt.Sprintf("killed by signal %d (%v)", int(ws.Signal()), ws.Signal())
	}
	return fmt.Sprintf("exit status %d", ws.ExitStatus())
}

// TestKill9StopsCgroups: with a cgroup per worker, kill -9 of handoff
// leaves nothing behind either: the janitor sends the stop signal into the
// workers' cgroups too (a setsid'd daemon is no longer in the worker's
// process group), kills what ignores it at the stop timeout
// (cgroup.kill), and removes the cgroups, handoff-<pid> included.
func TestKill9StopsCgroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("making cgroups needs root or a delegated cgroup")
	}
	checkFds(t)
	// The stubborn one says its pid only once it ignores SIGTERM.
	script := `setsid sh -c 'trap "" TERM; echo "tree stubborn $$"; exec sleep 1000' & ` +
		`setsid sleep 1000 & echo "tree setsid $!"; trap 'exit 0' TERM; while :; do sleep 0.05; done`
	p := startProc(t, bins.handoff, []string{"-workers", "1", "-ready", "start", "-listen", "tcp://127.0.0.1:0",
		"-stop-timeout", "1s", "-cgroups", "on", "-log-format", "json", "--", "/bin/sh", "-c", script})
	l, _ := p.waitMsg(0, "workers' trees: a cgroup per worker")
	base := l.Cgroup
	_, from := p.waitMsg(0, "listening")
	p.waitReady(from, 1, 1)
	tree := treePids(t, p, 2)
	if _, err := os.Stat(base); err != nil {
		t.Fatalf("handoff's cgroup for its workers: %v", err)
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait()
	// Its janitor is this process's child now (a subreaper): it exits once
	// it is done.
	waitJanitor(t)
	for _, pid := range tree {
		if s := procState(pid); s != "" && s != "Z" {
			t.Errorf("pid %d of the worker's tree is alive after kill -9 of handoff and its janitor's exit (state %s)", pid, s)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if _, err := os.Stat(base); !os.IsNotExist(err) {
		t.Errorf("%s after the janitor's exit: %v, want it removed", base, err)
	}
	reapLeftovers(t, false)
}

// waitJanitor waits for the janitor of a handoff that was killed, an
// orphan of this process now (a subreaper), to finish by itself: SIGKILLed
// by reapLeftovers, it would leave the workers' cgroups behind.
func waitJanitor(t *testing.T) {
	t.Helper()
	for pid, arg0 := range treeUnder(os.Getpid()) {
		if arg0 != "handoff-janitor" {
			continue // a zombie has no argv: done already
		}
		fd, err := unix.PidfdOpen(pid, 0)
		if err != nil {
			continue
		}
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		for fds[0].Revents&unix.POLLIN == 0 {
			left := time.Until(deadline(t))
			if left <= 0 {
				unix.Close(fd)
				t.Fatalf("the janitor %d still runs at the test's deadline", pid)
			}
			if _, err := unix.Poll(fds, int(left.Milliseconds())); err != nil && err != unix.EINTR {
				unix.Close(fd)
				t.Fatal(err)
			}
		}
		unix.Close(fd)
		var ws syscall.WaitStatus
		for {
			if _, err := syscall.Wait4(pid, &ws, 0, nil); err != syscall.EINTR {
				break
			}
		}
		if !ws.Exited() || ws.ExitStatus() != 0 {
			t.Errorf("the janitor %d ended %s, want exit status 0", pid, describe(ws))
		}
	}
}

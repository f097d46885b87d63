package janitor

import (
	"bufio"
	"bytes"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

func init() { runJanitor() }

// runJanitor is the janitor: a small process that outlives its supervisor
// to stop the workers' process groups when the supervisor dies without
// stopping them (kill -9, a crash, a SIGTERM in an upgrade's exec window).
// It runs before main in any program that imports this package, and does
// nothing unless HANDOFF_JANITOR=1.
//
// It reads lines from stdin, a pipe whose write end only the supervisor
// holds, and keeps it across an in-place upgrade: "+PID" when a worker
// starts (a worker leads its own process group), "-PID" once it is reaped,
// and "cDIR" when the workers have cgroups under DIR (handoff-<pid>).
// End of file means the supervisor is gone: it stops every group still
// listed as the supervisor would have (see stopGroups), then exits. After a
// clean stop nothing is listed. The janitor is in a process group of its
// own and ignores the signals a terminal or a supervisor's stop would send
// it.
func runJanitor() {
	if os.Getenv(Env) != "1" {
		return
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	sig, timeout := parseJanitorStop(os.Getenv(EnvStop))
	groups := make(map[int]bool)
	base := ""
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
			continue
		}
		if line[0] == 'c' {
			base = line[1:]
			continue
		}
		pid, err := strconv.Atoi(line[1:])
		if err != nil || pid <= 1 {
			continue
		}
		switch line[0] {
		case '+':
			groups[pid] = true
		case '-':
			delete(groups, pid)
		}
	}
	stopGroups(groups, base, sig, timeout)
	removeCgroups(base)
	os.Exit(0)
}

// parseJanitorStop reads EnvStop; anything else than "SIGNAL
// TIMEOUT" means SIGKILL at once.
func parseJanitorStop(v string) (unix.Signal, time.Duration) {
	s, ms, ok := strings.Cut(v, " ")
	sig, err1 := strconv.Atoi(s)
	t, err2 := strconv.ParseInt(ms, 10, 64)
	if !ok || err1 != nil || err2 != nil || sig < 1 || sig > 64 || t < 0 {
		return unix.SIGKILL, 0
	}
	return unix.Signal(sig), time.Duration(t) * time.Millisecond
}

// stopGroups sends sig to each group (and to its leader if it left it) and
// to every other process in the cgroups under base (a setsid'd daemon
// too), waits until none of them is alive (zombies are dead: whoever
// adopted them reaps them) or timeout has passed (0: for ever), then kills
// what is left: SIGKILL to the groups, cgroup.kill for base. A worker
// written in Go drains already, having seen the liveness pipe close; one
// that knows nothing of handoff gets its graceful stop, as from the
// supervisor.
func stopGroups(groups map[int]bool, base string, sig unix.Signal, timeout time.Duration) {
	// One signal per process, as from the supervisor: a shell that gets a
	// second SIGTERM while it runs its trap's exit dies of it.
	for pid := range groups {
		unix.Kill(-pid, sig)
		if pgid, err := unix.Getpgid(pid); err == nil && pgid != pid {
			unix.Kill(pid, sig)
		}
	}
	for _, pid := range cgroupProcs(base) {
		if pgid, err := unix.Getpgid(pid); err == nil && !groups[pgid] {
			unix.Kill(pid, sig)
		}
	}
	if sig != unix.SIGKILL {
		var end time.Time
		if timeout > 0 {
			end = time.Now().Add(timeout)
		}
		// No event says a process group is empty: look every 50ms.
		for (alive(groups) || len(cgroupProcs(base)) > 0) && (end.IsZero() || time.Now().Before(end)) {
			time.Sleep(50 * time.Millisecond)
		}
	}
	for pid := range groups {
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
	}
	if base != "" {
		os.WriteFile(filepath.Join(base, "cgroup.kill"), []byte("1"), 0)
	}
}

// cgroupProcs lists the processes in the cgroups right under base.
func cgroupProcs(base string) []int {
	if base == "" {
		return nil
	}
	dirs, _ := os.ReadDir(base)
	var pids []int
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		b, _ := os.ReadFile(filepath.Join(base, d.Name(), "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// removeCgroups removes the workers' cgroups under base, and base: each is
// busy until the last of its processes has died of cgroup.kill, so it tries
// for a second.
func removeCgroups(base string) {
	if base == "" {
		return
	}
	for end := time.Now().Add(time.Second); ; time.Sleep(20 * time.Millisecond) {
		dirs, _ := os.ReadDir(base)
		for _, d := range dirs {
			if d.IsDir() {
				unix.Rmdir(filepath.Join(base, d.Name()))
			}
		}
		err := unix.Rmdir(base)
		if err == nil || err == unix.ENOENT || time.Now().After(end) {
			return
		}
	}
}

// alive reports whether a process that is not a zombie is in one of the
// groups, or is one of their leaders.
func alive(groups map[int]bool) bool {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return false
	}
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + p.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold anything.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 3 || f[0] == "Z" || f[0] == "X" {
			continue
		}
		if pgrp, _ := strconv.Atoi(f[2]); groups[pgrp] || groups[pid] {
			return true
		}
	}
	return false
}

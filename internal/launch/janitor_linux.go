package launch

import (
	"bufio"
	"bytes"
	"os"
	"os/signal"
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
// starts (a worker leads its own process group), "-PID" once it is reaped.
// End of file means the supervisor is gone: it stops every group still
// listed as the supervisor would have (see stopGroups), then exits. After a
// clean stop nothing is listed. The janitor is in a process group of its
// own and ignores the signals a terminal or a supervisor's stop would send
// it.
func runJanitor() {
	if os.Getenv(EnvJanitor) != "1" {
		return
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
	sig, timeout := parseJanitorStop(os.Getenv(EnvJanitorStop))
	groups := make(map[int]bool)
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		line := sc.Text()
		if len(line) < 2 {
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
	stopGroups(groups, sig, timeout)
	os.Exit(0)
}

// parseJanitorStop reads EnvJanitorStop; anything else than "SIGNAL
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

// stopGroups sends sig to each group (and to its leader, in case it left
// it), waits until no process of them is alive (zombies are dead: whoever
// adopted them reaps them) or timeout has passed (0: for ever), then sends
// SIGKILL to what is left. A worker written in Go drains already, having
// seen the liveness pipe close; one that knows nothing of handoff gets its
// graceful stop, as from the supervisor.
func stopGroups(groups map[int]bool, sig unix.Signal, timeout time.Duration) {
	for pid := range groups {
		unix.Kill(-pid, sig)
		unix.Kill(pid, sig)
	}
	if sig == unix.SIGKILL {
		return
	}
	var end time.Time
	if timeout > 0 {
		end = time.Now().Add(timeout)
	}
	// No event says a process group is empty: look every 50ms.
	for alive(groups) && (end.IsZero() || time.Now().Before(end)) {
		time.Sleep(50 * time.Millisecond)
	}
	for pid := range groups {
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
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

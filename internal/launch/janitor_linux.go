package launch

import (
	"bufio"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func init() { runJanitor() }

// runJanitor is the janitor: a small process that outlives its supervisor
// to kill the workers' process groups when the supervisor dies without
// stopping them (kill -9, a crash). It runs before main in any program that
// imports this package, and does nothing unless HANDOFF_JANITOR=1.
//
// It reads lines from stdin, a pipe whose write end only the supervisor
// holds, and keeps it across an in-place upgrade: "+PID" when a worker
// starts (a worker leads its own process group), "-PID" once it is reaped.
// End of file means the supervisor is gone: it sends SIGKILL to every
// group still listed, and to the worker itself in case it changed group,
// then exits. After a clean stop nothing is listed. The janitor is in a
// process group of its own and ignores the signals a terminal or a
// supervisor's stop would send it.
func runJanitor() {
	if os.Getenv(EnvJanitor) != "1" {
		return
	}
	signal.Ignore(syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGTSTP, syscall.SIGTTIN, syscall.SIGTTOU)
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
	for pid := range groups {
		unix.Kill(-pid, unix.SIGKILL)
		unix.Kill(pid, unix.SIGKILL)
	}
	os.Exit(0)
}

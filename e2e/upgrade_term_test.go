//go:build linux

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTermDuringUpgrade sends SIGTERM at a random moment of an in-place
// upgrade (before, during or after the preflight, in the exec window, while
// the new program starts). The supervisor stops gracefully, exit status 0
// and every worker reaped by it; except for a SIGTERM that lands in the new
// program's first milliseconds, which no Go program can catch (see
// execInPlace in supervisor/signals_linux.go): then the supervisor dies of
// it, and the janitor stops the workers as the supervisor would have, so
// that every worker still exits by itself (status 0, or 1 from its liveness
// grace), none is killed, none is left. HANDOFF_UPGRADE_TERM_TRIES (10 in
// CI; the issue asks for 50) and HANDOFF_UPGRADE_TERM_SEED replay the
// moments.
func TestTermDuringUpgrade(t *testing.T) {
	tries, seed := 10, uint64(time.Now().UnixNano())
	if v := os.Getenv("HANDOFF_UPGRADE_TERM_TRIES"); v != "" {
		tries, _ = strconv.Atoi(v)
	}
	if v := os.Getenv("HANDOFF_UPGRADE_TERM_SEED"); v != "" {
		seed, _ = strconv.ParseUint(v, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	died := 0
	for i := range tries {
		sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "2")
		workers := []int{sup.next("worker ready").Pid, sup.next("worker ready").Pid}
		// A random moment: the whole upgrade takes a few hundred
		// milliseconds here; the sleep only spreads the tries over it.
		delay := time.Duration(rng.Int64N(int64(400 * time.Millisecond)))
		sup.signal(syscall.SIGUSR2)
		time.Sleep(delay)
		sup.signal(syscall.SIGTERM)
		waited := make(chan error, 1)
		go func() { waited <- sup.wait() }()
		var err error
		select {
		case err = <-waited:
		case <-time.After(time.Minute):
			// A graceful stop takes well under a second here.
			t.Errorf("try %d: SIGTERM %v into an upgrade was lost: the supervisor still runs a minute later", i, delay)
			sup.cmd.Process.Kill()
			<-waited
			for l := range sup.logs {
				t.Logf("try %d: its log: %s pid=%d status=%q error=%q signal=%q", i, l.Msg, l.Pid, l.Status, l.Error, l.Signal)
			}
			killOrphans(t)
			continue
		}
		if err == nil {
			if kids := children(t, os.Getpid()); len(kids) > 0 {
				t.Errorf("try %d: SIGTERM %v into an upgrade: exit 0 but processes left behind: %v", i, delay, kids)
				killOrphans(t)
			}
			continue
		}
		ws, _ := sup.cmd.ProcessState.Sys().(syscall.WaitStatus)
		if !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
			t.Errorf("try %d: SIGTERM %v into an upgrade: %v, want a graceful stop", i, delay, err)
			killOrphans(t)
			continue
		}
		died++
		// Its workers are this process's now (a subreaper): each must
		// exit by itself.
		for _, pid := range workers {
			if st := waitOrphan(t, pid); st.Signaled() {
				t.Errorf("try %d: SIGTERM %v into an upgrade killed the supervisor, and its worker %d was killed by %v", i, delay, pid, st.Signal())
			}
		}
		for _, pid := range children(t, os.Getpid()) { // the janitor
			if st := waitOrphan(t, pid); st.Signaled() || st.ExitStatus() != 0 {
				t.Errorf("try %d: after the supervisor died, process %d ended %v", i, pid, st)
			}
		}
	}
	t.Logf("%d tries (seed %d): %d stopped gracefully, %d died of a SIGTERM in the new program's first milliseconds, their workers stopped by the janitor",
		tries, seed, tries-died, died)
}

// waitOrphan waits for the exit of pid, an orphan this process adopted as a
// subreaper, until the test's deadline.
func waitOrphan(t *testing.T, pid int) syscall.WaitStatus {
	t.Helper()
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		t.Fatalf("pidfd_open %d: %v", pid, err)
	}
	defer unix.Close(fd)
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for fds[0].Revents&unix.POLLIN == 0 {
		left := time.Until(deadline(t))
		if left <= 0 {
			t.Fatalf("process %d still alive at the test's deadline", pid)
		}
		if _, err := unix.Poll(fds, int(left.Milliseconds())); err != nil && err != unix.EINTR {
			t.Fatal(err)
		}
	}
	var ws syscall.WaitStatus
	for {
		_, err := syscall.Wait4(pid, &ws, 0, nil)
		if err != syscall.EINTR {
			if err != nil {
				t.Fatalf("wait4 %d: %v", pid, err)
			}
			return ws
		}
	}
}

// blockedMasks returns, for each thread of pid, its blocked signal mask
// (SigBlk in /proc/PID/task/TID/status) when it is not empty in each of 5
// looks 20 ms apart. The Go runtime blocks every signal on a thread for a
// moment (making a thread, running a signal handler): one look caught a
// starting worker's thread so (TestUpgradeLeavesNoMaskBehind failed once in
// a CI run with a mask of all signals). An inherited mask stays.
func blockedMasks(t *testing.T, pid int) map[string]string {
	t.Helper()
	masks := blockedMasksOnce(t, pid)
	for range 4 {
		time.Sleep(20 * time.Millisecond)
		again := blockedMasksOnce(t, pid)
		for tid, m := range masks {
			if again[tid] != m {
				delete(masks, tid)
			}
		}
	}
	return masks
}

// blockedMasksOnce is one look of blockedMasks.
func blockedMasksOnce(t *testing.T, pid int) map[string]string {
	t.Helper()
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	masks := map[string]string{}
	for _, task := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", pid, task.Name()))
		if err != nil {
			continue // the thread ended
		}
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "SigBlk:"); ok {
				if v = strings.TrimSpace(v); strings.Trim(v, "0") != "" {
					masks[task.Name()] = v
				}
			}
		}
	}
	return masks
}

// TestUpgradeLeavesNoMaskBehind: the exec window of an in-place upgrade
// leaves no blocked signal to the new program, whose every thread and every
// child (a worker started after the upgrade) would inherit it: a worker
// that knows nothing of Go would never see its stop signal. The Go runtime
// blocks signals on one thread of its own (the one os/signal listens on),
// so one thread with a mask is allowed, not two.
func TestUpgradeLeavesNoMaskBehind(t *testing.T) {
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", "1")
	sup.next("worker ready")
	if m := blockedMasks(t, sup.pid); len(m) > 1 {
		t.Fatalf("before any upgrade, threads of the supervisor with a blocked mask: %v", m)
	}
	sup.signal(syscall.SIGUSR2)
	sup.next("supervisor upgraded in place")
	if m := blockedMasks(t, sup.pid); len(m) > 1 {
		t.Errorf("after an upgrade, threads of the supervisor with a blocked mask: %v", m)
	}
	sup.signal(syscall.SIGHUP)
	w := sup.next("worker ready")
	if m := blockedMasks(t, w.Pid); len(m) > 1 {
		t.Errorf("a worker started after the upgrade has threads with a blocked mask: %v", m)
	}
	sup.signal(syscall.SIGTERM)
	if err := sup.wait(); err != nil {
		t.Fatalf("supervisor exit after SIGTERM: %v", err)
	}
}

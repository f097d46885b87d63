//go:build unix

package supervisor_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/supervisor"
)

func TestWorkersServeWithIdentity(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "serve", []string{"TEST_ECHO=hello"}, supervisor.WithWorkers(3))
	f.run(ctx)
	slots := map[int]int{}
	for range 3 {
		w := f.waitSpawn(ctx)
		slots[w.Slot] = w.Pid
	}
	if len(slots) != 3 {
		t.Fatalf("slots %v, want 0, 1, 2", slots)
	}
	seen := map[int]bool{}
	for len(seen) < 3 && ctx.Err() == nil {
		fields := strings.Fields(f.ask())
		if len(fields) != 6 {
			t.Fatalf("worker said %q", fields)
		}
		pid, _ := strconv.Atoi(fields[0])
		slot, _ := strconv.Atoi(fields[1])
		if slots[slot] != pid {
			t.Fatalf("worker pid %d claims slot %d, which has pid %d", pid, slot, slots[slot])
		}
		if fields[2] != "1" || fields[3] != strconv.Itoa(os.Getpid()) || fields[4] != "hello" || fields[5] != "arg1" {
			t.Fatalf("worker said %q: want generation 1, supervisor %d, echo hello, args arg1", fields, os.Getpid())
		}
		seen[pid] = true
	}
	st := f.s.Stats()
	if len(st.Workers) != 3 || st.Generation != 1 {
		t.Fatalf("stats %+v, want 3 workers of generation 1", st)
	}
	for _, w := range st.Workers {
		if w.State != supervisor.Ready || slots[w.Slot] != w.Pid {
			t.Errorf("stats worker %+v does not match the spawned one (pid %d)", w, slots[w.Slot])
		}
	}
}

func TestRestartsKilledWorker(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "serve", nil, supervisor.WithWorkers(2), supervisor.WithMinUptime(0))
	f.run(ctx)
	w := f.waitSpawn(ctx)
	f.waitSpawn(ctx)
	fds := fdCount(t)
	for i := range 20 {
		if err := syscall.Kill(w.Pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if st := f.waitExit(ctx); st.Pid != w.Pid || st.Signal != syscall.SIGKILL {
			t.Fatalf("exit %+v, want pid %d killed", st, w.Pid)
		}
		nw := f.waitSpawn(ctx)
		if nw.Slot != w.Slot || nw.Restarts != i+1 {
			t.Fatalf("replacement %+v for slot %d, want restart %d", nw, w.Slot, i+1)
		}
		w = nw
	}
	st := f.s.Stats()
	if st.Restarts != 20 || st.Exits.Signal != 20 || st.StartFailures != 0 {
		t.Errorf("stats %+v: want 20 restarts after 20 kills, no start failure", st)
	}
	if got := fdCount(t); got > fds {
		t.Errorf("fds: %d before 20 restarts, %d after", fds, got)
	}
}

func TestCrashLoopBacksOff(t *testing.T) {
	ctx := deadline(t)
	const (
		minDelay = 20 * time.Millisecond
		maxDelay = 80 * time.Millisecond
	)
	f := newFixture(t, "exit", []string{"TEST_EXIT_CODE=3"},
		supervisor.WithBackoff(minDelay, maxDelay), supervisor.WithMinUptime(time.Hour))
	f.run(ctx)
	var last time.Time
	for i := range 8 {
		f.waitSpawn(ctx)
		now := time.Now()
		st := f.waitExit(ctx)
		if st.Code != 3 {
			t.Fatalf("exit %v, want status 3", st)
		}
		if i > 0 {
			// Timers never fire early, so the gap is at least the backoff.
			want := min(minDelay<<(i-1), maxDelay)
			if gap := now.Sub(last); gap < want {
				t.Errorf("start %d came %v after the previous exit, want at least %v", i, gap, want)
			}
		}
		last = st.Time
	}
	if st := f.s.Stats(); st.StartFailures < 8 || st.Exits.Failed < 8 {
		t.Errorf("stats %+v: want at least 8 start failures", st)
	}
}

func TestShutdownDrainsThenKills(t *testing.T) {
	ctx := deadline(t)
	for _, tc := range []struct {
		helper string
		signal syscall.Signal // how the worker should end
	}{
		{"serve", 0},
		{"stubborn", syscall.SIGKILL},
	} {
		t.Run(tc.helper, func(t *testing.T) {
			fds := fdCount(t)
			f := newFixture(t, tc.helper, nil)
			f.run(ctx)
			f.waitSpawn(ctx)
			f.ask() // serving, so its SIGTERM disposition is in place
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			err := f.s.Shutdown(sctx)
			if tc.signal == 0 && err != nil {
				t.Fatalf("Shutdown of a draining worker: %v", err)
			}
			if tc.signal != 0 && !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown of a stubborn worker: %v, want deadline exceeded", err)
			}
			if err := <-f.runErr; err != nil {
				t.Fatalf("Run: %v", err)
			}
			f.runErr <- nil // for the cleanup
			st := f.s.Stats()
			if len(st.Workers) != 0 {
				t.Fatalf("stats after Run returned: %+v", st)
			}
			f.sock.Close()
			if got := fdCount(t); got > fds {
				t.Errorf("fds: %d before, %d after", fds, got)
			}
		})
	}
}

func TestRunAfterCloseAndTwice(t *testing.T) {
	ctx := deadline(t)
	exe, _ := os.Executable()
	s, err := supervisor.New(supervisor.Command{Path: exe})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s.Close()
	if err := s.Run(ctx); !errors.Is(err, supervisor.ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}

	f := newFixture(t, "serve", nil)
	f.run(ctx)
	f.waitSpawn(ctx)
	if err := f.s.Run(ctx); !errors.Is(err, supervisor.ErrRunning) {
		t.Fatalf("second Run: %v, want ErrRunning", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	exe, _ := os.Executable()
	for _, tc := range []struct {
		name string
		cmd  supervisor.Command
		opts []supervisor.Option
		want string
	}{
		{"empty path", supervisor.Command{}, nil, "path is empty"},
		{"missing command", supervisor.Command{Path: "/nonexistent/handoff-worker"}, nil, "/nonexistent/handoff-worker"},
		{"not executable", supervisor.Command{Path: "/etc/passwd"}, nil, "/etc/passwd"},
		{"zero workers", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithWorkers(0)}, "workers"},
		{"bad address", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithListen("udp://1.2.3.4:5")}, "udp"},
		{"bad backoff", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithBackoff(time.Second, time.Millisecond)}, "backoff"},
		{"missing directory", supervisor.Command{Path: exe, Dir: "/nonexistent/dir"}, nil, "/nonexistent/dir"},
		{"directory is a file", supervisor.Command{Path: exe, Dir: "/etc/passwd"}, nil, "not a directory"},
		{"bad surge", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithSurge(0)}, "surge"},
		{"negative max draining", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithMaxDraining(-1)}, "max draining -1"},
		{"bad watchdog", supervisor.Command{Path: exe}, []supervisor.Option{supervisor.WithWatchdog(time.Microsecond)}, "watchdog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := supervisor.New(tc.cmd, tc.opts...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error mentioning %q", err, tc.want)
			}
		})
	}
}

// TestSocketStaysNonblocking proves that spawning never flips the shared
// socket to blocking mode, in the supervisor or in a running worker.
func TestSocketStaysNonblocking(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "flags", nil, supervisor.WithWorkers(2), supervisor.WithMinUptime(0))
	f.run(ctx)
	w := f.waitSpawn(ctx)
	f.waitSpawn(ctx)
	// Spawn more workers while the first ones run.
	for range 3 {
		syscall.Kill(w.Pid, syscall.SIGKILL)
		f.waitExit(ctx)
		w = f.waitSpawn(ctx)
	}
	for range 4 {
		if got := f.ask(); got != "nonblock=true" {
			t.Fatalf("worker's fd 3: %s", got)
		}
	}
	var flags int
	var ferr error
	f.sock.Control(func(fd uintptr) { flags, ferr = unix.FcntlInt(fd, unix.F_GETFL, 0) })
	if ferr != nil || flags&unix.O_NONBLOCK == 0 {
		t.Fatalf("supervisor's socket flags %#x (%v): not O_NONBLOCK", flags, ferr)
	}
}

// TestTwoSupervisors runs two supervisors in one process: neither sees the
// other's workers or exits.
func TestTwoSupervisors(t *testing.T) {
	ctx := deadline(t)
	a := newFixture(t, "serve", []string{"TEST_ECHO=a"}, supervisor.WithMinUptime(0))
	b := newFixture(t, "serve", []string{"TEST_ECHO=b"}, supervisor.WithMinUptime(0))
	a.run(ctx)
	b.run(ctx)
	wa, wb := a.waitSpawn(ctx), b.waitSpawn(ctx)
	syscall.Kill(wa.Pid, syscall.SIGKILL)
	if st := a.waitExit(ctx); st.Pid != wa.Pid {
		t.Fatalf("a saw exit of %d, want %d", st.Pid, wa.Pid)
	}
	a.waitSpawn(ctx)
	if got := strings.Fields(b.ask()); got[0] != strconv.Itoa(wb.Pid) || got[4] != "b" {
		t.Fatalf("b's worker said %q", got)
	}
	if got := strings.Fields(a.ask()); got[4] != "a" {
		t.Fatalf("a's worker said %q", got)
	}
	select {
	case st := <-b.exited:
		t.Fatalf("b saw an exit: %+v", st)
	default:
	}
	if st := b.s.Stats(); st.Restarts != 0 || len(st.Workers) != 1 {
		t.Fatalf("b's stats %+v", st)
	}
}

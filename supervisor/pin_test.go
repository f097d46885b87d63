//go:build unix

package supervisor_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
)

// TestGenerationPinsItsRelease: the command runs through a release layout,
// current -> releases/N. Switching current to a broken release does not
// change the serving generation: a worker that crashes is restarted from
// its own release; a roll to the broken one fails and the slot serves on.
func TestGenerationPinsItsRelease(t *testing.T) {
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, d := range []string{"releases/1", "releases/2"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(exe, filepath.Join(dir, "releases/1/worker")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "releases/2/worker"), []byte("#!/bin/sh\nexit 7\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	current := filepath.Join(dir, "current")
	if err := os.Symlink("releases/1", current); err != nil {
		t.Fatal(err)
	}
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	ready := make(chan supervisor.WorkerInfo, 16)
	exited := make(chan reap.Status, 16)
	s, err := supervisor.New(supervisor.Command{Path: filepath.Join(current, "worker"), Env: workerEnv(helperEnv + "=notify")},
		supervisor.WithSockets(sock), supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()), supervisor.WithMinUptime(0),
		supervisor.WithAcceptWindow(200*time.Millisecond),
		supervisor.WithHooks(supervisor.Hooks{
			OnReady: func(w supervisor.WorkerInfo) { ready <- w },
			OnExit:  func(w supervisor.WorkerInfo, st reap.Status) bool { exited <- st; return true },
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	w := recv(ctx, t, ready, "the first worker")

	// Deploy the broken release: current -> releases/2.
	tmp := filepath.Join(dir, "current.new")
	if err := os.Symlink("releases/2", tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(w.Pid, syscall.SIGKILL)
	recv(ctx, t, exited, "the crash")
	if nw := recv(ctx, t, ready, "the restarted worker"); nw.Generation != 1 {
		t.Fatalf("restarted worker %+v, want generation 1", nw)
	}
	err = s.Roll(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("roll to the broken release: %v, want its exit status 7", err)
	}
	st := s.Stats()
	if st.Generation != 1 || len(st.Workers) != 1 || st.Workers[0].State != supervisor.Ready || st.Exits.Failed != 1 {
		t.Fatalf("after the failed roll: %+v", st)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// TestGenerationPinsItsBinary: a generation keeps the binary it started
// with, open, not whatever is at its path later. The program at the path
// is replaced (renamed over) by a bad build after the first generation
// started: the roll to it fails part-way, and the way back runs the
// original binary again, as does a later restart of the serving
// generation. The kernel says which binary a worker runs: /proc/PID/exe.
func TestGenerationPinsItsBinary(t *testing.T) {
	ctx := deadline(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "worker")
	copyFile(t, exe, path)
	orig, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	ready := make(chan supervisor.WorkerInfo, 16)
	ends := make(chan supervisor.RollEvent, 16)
	s, err := supervisor.New(supervisor.Command{Path: path, Env: workerEnv(helperEnv + "=notify")},
		supervisor.WithSockets(sock), supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithWorkers(2), supervisor.WithMinUptime(0),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()), supervisor.WithAcceptWindow(0),
		supervisor.WithHooks(supervisor.Hooks{
			OnReady:   func(w supervisor.WorkerInfo) { ready <- w },
			OnRollEnd: func(e supervisor.RollEvent) { ends <- e },
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	defer func() {
		s.Close()
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}()
	recv(ctx, t, ready, "the first worker")
	recv(ctx, t, ready, "the second worker")
	runsOrig := func(pid int) bool {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
		return err == nil && os.SameFile(fi, orig)
	}

	// The bad build: its first start serves (a canary that passes, with no
	// accept window), every later one exits 7.
	bad := filepath.Join(dir, "worker.new")
	script := fmt.Sprintf("#!/bin/sh\nif [ -e %[1]s/once ]; then exit 7; fi\n: > %[1]s/once\nexec %[2]s \"$@\"\n", dir, exe)
	if err := os.WriteFile(bad, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bad, path); err != nil {
		t.Fatal(err)
	}
	err = s.Roll(ctx)
	if err == nil || !strings.Contains(err.Error(), "exit status 7") {
		t.Fatalf("roll to the bad build: %v, want its exit status 7", err)
	}
	if e := recv(ctx, t, ends, "the roll's end"); e.Result != supervisor.RollRolledBack {
		t.Fatalf("roll ended %+v, want %q", e, supervisor.RollRolledBack)
	}
	st := s.Stats()
	if len(st.Workers) != 2 {
		t.Fatalf("after the rollback: %+v", st)
	}
	for _, w := range st.Workers {
		if w.Generation != 1 || w.State != supervisor.Ready || !runsOrig(w.Pid) {
			t.Fatalf("after the rollback, worker %+v: want generation 1, ready, running the original binary", w)
		}
		// The pin it was started from is not left open in it.
		fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", w.Pid))
		for _, fd := range fds {
			if fi, err := os.Stat(fd); err == nil && os.SameFile(fi, orig) {
				t.Errorf("worker %d holds its own binary open as %s", w.Pid, fd)
			}
		}
	}

	// A restart of the serving generation runs its own binary too.
	for len(ready) > 0 {
		<-ready
	}
	syscall.Kill(st.Workers[0].Pid, syscall.SIGKILL)
	if w := recv(ctx, t, ready, "the restarted worker"); w.Generation != 1 || !runsOrig(w.Pid) {
		t.Fatalf("restarted worker %+v: want generation 1 running the original binary", w)
	}
}

// TestPinsDoNotLeak: every roll pins its binary (an open file); a roll's
// end forgets the pins of generations nothing runs, and Close the rest.
func TestPinsDoNotLeak(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "notify", nil, supervisor.WithMinUptime(0),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()), supervisor.WithAcceptWindow(0))
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	fds := fdCount(t)
	go func() { f.runErr <- f.s.Run(ctx) }()
	f.waitReady(ctx)
	for i := range 12 {
		if err := f.s.Roll(ctx); err != nil {
			t.Fatalf("roll %d: %v", i, err)
		}
		if n := openCopies(t, exe); n != 1 {
			t.Fatalf("after roll %d: the worker binary is open %d times, want once (the serving generation's pin)", i, n)
		}
	}
	f.s.Close()
	if err := <-f.runErr; err != nil {
		t.Fatal(err)
	}
	if got := fdCount(t); got > fds {
		t.Errorf("%d fds open after Close, %d before", got, fds)
	}
}

// openCopies counts this process's descriptors open on the file at path.
func openCopies(t *testing.T, path string) int {
	t.Helper()
	want, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	fds, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		if fi, err := os.Stat(fd); err == nil && os.SameFile(fi, want) {
			n++
		}
	}
	return n
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

// TestPinWithoutSockets: a worker with nothing to set (no socket, no
// watchdog) is exec'd from its pinned program directly, without the
// trampoline: after another program is renamed over its path, its restart
// still runs the pinned one.
func TestPinWithoutSockets(t *testing.T) {
	ctx := deadline(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "prog")
	copyFile(t, "/bin/sleep", path)
	var orig syscall.Stat_t
	if err := syscall.Stat(path, &orig); err != nil {
		t.Fatal(err)
	}
	s, err := supervisor.New(supervisor.Command{Path: path, Args: []string{"prog", "60"}},
		supervisor.WithLogger(zaptest.NewLogger(t)), supervisor.WithReadiness(supervisor.ReadyOnStart()),
		supervisor.WithBackoff(time.Millisecond, 10*time.Millisecond), supervisor.WithMinUptime(0))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	first := waitStats(ctx, t, s, "a worker", func(st supervisor.Stats) bool { return len(st.Workers) == 1 }).Workers[0]
	copyFile(t, "/bin/true", path+".new")
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(first.Pid, syscall.SIGKILL)
	second := waitStats(ctx, t, s, "its restart", func(st supervisor.Stats) bool {
		return len(st.Workers) == 1 && st.Workers[0].Pid != first.Pid && st.Workers[0].State == supervisor.Ready
	}).Workers[0]
	var exe syscall.Stat_t
	err = syscall.Stat(fmt.Sprintf("/proc/%d/exe", second.Pid), &exe)
	s.Close()
	if rerr := <-errc; rerr != nil {
		t.Error(rerr)
	}
	if err != nil {
		t.Fatalf("the restarted worker %d: %v", second.Pid, err)
	}
	if exe.Ino != orig.Ino {
		t.Errorf("the restarted worker runs inode %d, want the pinned program's %d", exe.Ino, orig.Ino)
	}
}

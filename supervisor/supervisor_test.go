package supervisor_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

const helperEnv = "HANDOFF_TEST_HELPER"

// helpers are the worker programs: the test binary re-executed with
// HANDOFF_TEST_HELPER naming one of them.
var helpers = map[string]func() int{
	// serve answers every connection on every inherited listener with a
	// line: its pid, its identity, then TEST_ECHO and its arguments. It
	// exits 0 on SIGTERM.
	"serve": func() int { return serve(false) },
	// stubborn serves like serve but ignores SIGTERM.
	"stubborn": func() int { return serve(true) },
	// exit exits at once with the status in TEST_EXIT_CODE.
	"exit": func() int {
		code, _ := strconv.Atoi(os.Getenv("TEST_EXIT_CODE"))
		return code
	},
	// tree runs TEST_TREE with sh, writes the first line it prints (a pid)
	// to TEST_PIDFILE, then serves like serve.
	"tree": func() int {
		cmd := exec.Command("/bin/setsid", "/bin/sh", "-c", os.Getenv("TEST_TREE"))
		out, err := cmd.StdoutPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		line, _ := bufio.NewReader(out).ReadString('\n')
		out.Close()
		if err := os.WriteFile(os.Getenv("TEST_PIDFILE"), []byte(line), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			return 3
		}
		return serve(false)
	},
	// flags reports the O_NONBLOCK flag of its fd 3 on every connection.
	"flags": func() int {
		return serveWith(false, func() string {
			fl, err := unix.FcntlInt(3, unix.F_GETFL, 0)
			if err != nil {
				return "error " + err.Error()
			}
			return fmt.Sprintf("nonblock=%t", fl&unix.O_NONBLOCK != 0)
		})
	},
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
			os.Exit(2)
		}
		os.Exit(h())
	}
	goleak.VerifyTestMain(m)
}

func serve(ignoreTerm bool) int {
	id, _ := worker.Self()
	line := fmt.Sprintf("%d %d %d %d %s %s", os.Getpid(), id.Worker, id.Generation, id.SupervisorPID,
		os.Getenv("TEST_ECHO"), strings.Join(os.Args[1:], ","))
	return serveWith(ignoreTerm, func() string { return line })
}

// serveWith inherits the listeners and answers each connection with one
// line from reply, until SIGTERM (unless ignored).
func serveWith(ignoreTerm bool, reply func() string) int {
	term := make(chan os.Signal, 1)
	if ignoreTerm {
		signal.Ignore(syscall.SIGTERM) // and term never fires
	} else {
		signal.Notify(term, syscall.SIGTERM)
	}
	ls, err := listener.Inherit()
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	for _, l := range ls {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				fmt.Fprintln(c, reply())
				c.Close()
			}
		}()
	}
	<-term
	return 0
}

// workerEnv is the environment of a test worker: a race-built helper would
// otherwise sleep a second at exit.
func workerEnv(kv ...string) []string {
	return append(os.Environ(), append([]string{"GORACE=atexit_sleep_ms=0"}, kv...)...)
}

func deadline(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(2 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d.Add(-5*time.Second))
	t.Cleanup(cancel)
	return ctx
}

// fixture is a supervisor running the test binary as its workers on one
// TCP socket, with the hooks turned into event channels.
type fixture struct {
	t       *testing.T
	s       *supervisor.Supervisor
	sock    *listener.Socket
	spawned chan supervisor.WorkerInfo
	ready   chan supervisor.WorkerInfo
	exited  chan reap.Status
	runErr  chan error
	// before, if set before run, is called from the BeforeSpawn hook;
	// extra's OnRollEnd, OnCanary and AfterExit are installed too.
	before func(*supervisor.Spawn) error
	extra  supervisor.Hooks
}

func newFixture(t *testing.T, helper string, env []string, opts ...supervisor.Option) *fixture {
	t.Helper()
	sock, err := listener.Listen(listener.Addr{Name: "test", Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{
		t:       t,
		sock:    sock,
		spawned: make(chan supervisor.WorkerInfo, 1024),
		ready:   make(chan supervisor.WorkerInfo, 1024),
		exited:  make(chan reap.Status, 1024),
		runErr:  make(chan error, 1),
	}
	hooks := supervisor.Hooks{
		BeforeSpawn: func(sp *supervisor.Spawn) error {
			if f.before != nil {
				return f.before(sp)
			}
			return nil
		},
		AfterSpawn: func(w supervisor.WorkerInfo) { f.spawned <- w },
		OnRollEnd: func(e supervisor.RollEvent) {
			if f.extra.OnRollEnd != nil {
				f.extra.OnRollEnd(e)
			}
		},
		OnCanary: func(w supervisor.WorkerInfo) error {
			if f.extra.OnCanary != nil {
				return f.extra.OnCanary(w)
			}
			return nil
		},
		OnReady: func(w supervisor.WorkerInfo) { f.ready <- w },
		OnExit:  func(w supervisor.WorkerInfo, st reap.Status) bool { f.exited <- st; return true },
		AfterExit: func(e supervisor.ExitEvent) {
			if f.extra.AfterExit != nil {
				f.extra.AfterExit(e)
			}
		},
	}
	opts = append([]supervisor.Option{
		supervisor.WithSockets(sock),
		supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithHooks(hooks),
	}, opts...)
	f.s, err = supervisor.New(supervisor.Command{
		Path: exe,
		Args: []string{exe, "arg1"},
		Env:  workerEnv(append(env, helperEnv+"="+helper)...),
	}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) run(ctx context.Context) {
	go func() { f.runErr <- f.s.Run(ctx) }()
	f.t.Cleanup(func() {
		f.s.Close()
		if err := <-f.runErr; err != nil {
			f.t.Errorf("Run: %v", err)
		}
	})
}

// waitSpawn returns the next started worker.
func (f *fixture) waitSpawn(ctx context.Context) supervisor.WorkerInfo {
	f.t.Helper()
	select {
	case w := <-f.spawned:
		return w
	case <-ctx.Done():
		f.t.Fatal("timed out waiting for a worker to start")
	}
	panic("unreachable")
}

// waitExit returns the next exit OnExit saw.
func (f *fixture) waitExit(ctx context.Context) reap.Status {
	f.t.Helper()
	return recv(ctx, f.t, f.exited, "a worker's exit")
}

// recv receives from c, or fails the test at ctx's deadline.
func recv[T any](ctx context.Context, t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-ctx.Done():
		t.Fatalf("timed out waiting for %s", what)
	}
	panic("unreachable")
}

// waitReady returns the next worker to become ready.
func (f *fixture) waitReady(ctx context.Context) supervisor.WorkerInfo {
	f.t.Helper()
	select {
	case w := <-f.ready:
		return w
	case <-ctx.Done():
		f.t.Fatal("timed out waiting for a worker to be ready")
	}
	panic("unreachable")
}

// ask connects to the workers' socket and returns the line a worker wrote.
func (f *fixture) ask() string {
	f.t.Helper()
	c, err := net.Dial("tcp", f.sock.Addr().String())
	if err != nil {
		f.t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		f.t.Fatalf("reading from a worker: %v", err)
	}
	return strings.TrimSpace(line)
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

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

func TestHooksChangeSpawnAndVeto(t *testing.T) {
	ctx := deadline(t)
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	exe, _ := os.Executable()
	spawned := make(chan supervisor.WorkerInfo, 16)
	vetoed := make(chan reap.Status, 16)
	s, err := supervisor.New(supervisor.Command{Path: exe, Env: workerEnv(helperEnv + "=serve")},
		supervisor.WithSockets(sock),
		supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithHooks(supervisor.Hooks{
			BeforeSpawn: func(sp *supervisor.Spawn) error {
				sp.Env = append(sp.Env, "TEST_ECHO=from-hook")
				sp.Args = append(sp.Args, "hooked")
				return nil
			},
			AfterSpawn: func(w supervisor.WorkerInfo) { spawned <- w },
			OnExit:     func(w supervisor.WorkerInfo, st reap.Status) bool { vetoed <- st; return false },
		}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	w := recv(ctx, t, spawned, "a worker")
	c, err := net.Dial("tcp", sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if f := strings.Fields(line); len(f) != 6 || f[4] != "from-hook" || f[5] != "hooked" {
		t.Fatalf("worker said %q, want the hook's env and argument", line)
	}
	syscall.Kill(w.Pid, syscall.SIGKILL)
	if st := recv(ctx, t, vetoed, "the vetoed exit"); st.Pid != w.Pid {
		t.Fatalf("OnExit saw pid %d, want %d", st.Pid, w.Pid)
	}
	if st := s.Stats(); len(st.Workers) != 0 {
		t.Fatalf("after a vetoed restart: %d workers, want 0", len(st.Workers))
	}
	select {
	case w := <-spawned:
		t.Fatalf("worker %+v started after a veto", w)
	default:
	}
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

func TestBeforeSpawnErrorIsStartFailure(t *testing.T) {
	ctx := deadline(t)
	exe, _ := os.Executable()
	calls := make(chan struct{}, 16)
	s, err := supervisor.New(supervisor.Command{Path: exe},
		supervisor.WithLogger(zaptest.NewLogger(t)),
		supervisor.WithBackoff(time.Millisecond, time.Millisecond),
		supervisor.WithHooks(supervisor.Hooks{BeforeSpawn: func(*supervisor.Spawn) error {
			calls <- struct{}{}
			return errors.New("no")
		}}))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	for range 3 {
		recv(ctx, t, calls, "a BeforeSpawn call")
	}
	if st := s.Stats(); st.StartFailures < 3 || len(st.Workers) != 0 {
		t.Errorf("stats %+v: want 3 start failures and no worker", st)
	}
	s.Close()
	if err := <-errc; err != nil {
		t.Fatal(err)
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

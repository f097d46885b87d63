//go:build unix

package supervisor_test

import (
	"bufio"
	"context"
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
	return f.askAt(f.sock.Addr().String())
}

// askAt connects to addr and returns the line a worker wrote.
func (f *fixture) askAt(addr string) string {
	f.t.Helper()
	c, err := net.Dial("tcp", addr)
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

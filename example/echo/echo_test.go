package main

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

// TestMain runs the program itself when a supervisor started the test
// binary as its worker.
func TestMain(m *testing.M) {
	if worker.IsWorker() {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// TestWorkerOnlyDeps: the program links neither the supervisor, nor its
// reaper, nor the spawning plumbing (and so runs none of their init).
func TestWorkerOnlyDeps(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	has := map[string]bool{}
	for _, d := range deps {
		has[d] = true
	}
	const mod = "github.com/handoff-dev/handoff/"
	if !has[mod+"worker"] || !has[mod+"listener"] {
		t.Fatalf("go list -deps does not list worker and listener: %q", deps)
	}
	for _, p := range []string{"supervisor", "reap", "internal/launch", "internal/logging"} {
		if has[mod+p] {
			t.Errorf("a worker-only program depends on %s%s", mod, p)
		}
	}
}

// TestNeverKilledForReadiness: this program, which never calls anything
// named Ready, serves under a supervisor that waits for READY=1 with a ready
// timeout (10 s, where the default is 60 s), and is not killed for it:
// worker.Run says ready when the handler accepts. A worker that did not
// would be killed at the timeout, and the test fail on its exit.
func TestNeverKilledForReadiness(t *testing.T) {
	// The timeout is a bound on start-up, not a figure the test measures:
	// on a loaded machine a race-built worker has taken over 2 s to start.
	const workers, readyTimeout = 2, 10 * time.Second
	ctx := deadline(t)
	fds := fdCount(t)
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	ready := make(chan supervisor.WorkerInfo, 16)
	exited := make(chan string, 16)
	s, err := supervisor.New(supervisor.Command{Path: exe, Env: append(os.Environ(), "GORACE=atexit_sleep_ms=0")},
		supervisor.WithSockets(sock),
		supervisor.WithWorkers(workers),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()),
		supervisor.WithReadyTimeout(readyTimeout),
		supervisor.WithLogger(log),
		supervisor.WithHooks(supervisor.Hooks{
			OnReady: func(w supervisor.WorkerInfo) { ready <- w },
			OnExit: func(w supervisor.WorkerInfo, st reap.Status) bool {
				exited <- fmt.Sprintf("worker %d (pid %d): %s", w.Slot, w.Pid, st)
				return true
			},
		}))
	if err != nil {
		t.Fatal(err)
	}
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()

	pids := map[int]bool{}
	for len(pids) < workers {
		select {
		case w := <-ready:
			pids[w.Pid] = true
		case e := <-exited:
			t.Fatalf("a worker exited before %d were ready: %s", workers, e)
		case <-ctx.Done():
			t.Fatalf("%d of %d workers ready when the test ran out of time", len(pids), workers)
		}
	}
	for i := range 8 {
		echoOnce(t, sock.Addr().String(), fmt.Sprintf("hello %d", i))
	}
	// Nobody was killed or replaced: once ready, a worker has no ready
	// deadline left.
	select {
	case e := <-exited:
		t.Fatalf("a worker exited: %s", e)
	default:
	}
	st := s.Stats()
	if st.Exits != (supervisor.Stats{}).Exits || len(st.Workers) != workers {
		t.Fatalf("stats %+v: want %d workers and no exits", st, workers)
	}
	for _, w := range st.Workers {
		if !pids[w.Pid] || w.State != supervisor.Ready {
			t.Fatalf("worker %+v: want one of the first ready workers %v, ready", w, pids)
		}
	}
	if n := logs.FilterMessage("worker not ready in time: killing").Len(); n != 0 {
		t.Fatalf("%d workers killed for readiness", n)
	}
	echoOnce(t, sock.Addr().String(), "still here")

	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-runErr; err != nil {
		t.Fatalf("Run: %v", err)
	}
	for _, e := range logs.FilterMessage("worker exited").All() {
		if st := e.ContextMap()["status"]; st != "exit status 0" {
			t.Errorf("a worker stopped with %v, want exit status 0", st)
		}
	}
	sock.Close()
	if n := fdCount(t); n != fds {
		t.Errorf("%d descriptors open after the test, %d before", n, fds)
	}
}

// echoOnce sends msg on a new connection and wants it back.
func echoOnce(t *testing.T, addr, msg string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if _, err := fmt.Fprintln(c, msg); err != nil {
		t.Fatal(err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("reading the echo of %q: %v", msg, err)
	}
	if got != msg+"\n" {
		t.Fatalf("echo %q, want %q", got, msg+"\n")
	}
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

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// TestLowerPackagesNeverImportSupervisor: data flows one way; listener,
// reap and worker know nothing of the supervisor, directly or not.
func TestLowerPackagesNeverImportSupervisor(t *testing.T) {
	const mod = "github.com/handoff-dev/handoff/"
	for _, p := range []string{"listener", "reap", "worker"} {
		out, err := exec.Command("go", "list", "-deps", mod+p).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", p, err)
		}
		deps := strings.Fields(string(out))
		if len(deps) == 0 || deps[len(deps)-1] != mod+p {
			t.Fatalf("go list -deps %s printed %q", p, deps)
		}
		for _, d := range deps {
			if d == mod+"supervisor" {
				t.Errorf("%s depends on %s", p, d)
			}
		}
	}
}

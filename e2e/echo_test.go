//go:build linux

package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/reap"
	"github.com/handoff-dev/handoff/supervisor"
)

// TestNeverKilledForReadiness: example/echo, which never calls anything
// named Ready, serves under a supervisor that waits for READY=1 with a ready
// timeout (10 s, where the default is 60 s), and is not killed for it:
// worker.Run says ready when the handler accepts. A worker that did not
// would be killed at the timeout, and the test fail on its exit.
func TestNeverKilledForReadiness(t *testing.T) {
	// The timeout is a bound on start-up, not a figure the test measures:
	// on a loaded machine a race-built worker has taken over 2 s to start.
	const workers, readyTimeout = 2, 10 * time.Second
	ctx, cancel := context.WithDeadline(context.Background(), deadline(t))
	defer cancel()
	fds := fdCount(t, os.Getpid())
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	core, logs := observer.New(zap.InfoLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	ready := make(chan supervisor.WorkerInfo, 16)
	exited := make(chan string, 16)
	s, err := supervisor.New(supervisor.Command{Path: echoBin, Env: os.Environ()},
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
	if n := fdCount(t, os.Getpid()); n != fds {
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

//go:build linux

package supervisor_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
)

func init() {
	// deaf keeps its sockets open and never accepts, like a server that
	// ignores LISTEN_FDS (python3 -m http.server); it exits 0 on SIGTERM.
	helpers["deaf"] = func() int {
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		<-term
		return 0
	}
	// slow accepts one connection on each socket every TEST_SLOW_EVERY
	// and answers it with a line, until SIGTERM.
	helpers["slow"] = func() int {
		every, err := time.ParseDuration(os.Getenv("TEST_SLOW_EVERY"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "slow:", err)
			return 3
		}
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		ls, err := listener.Inherit()
		if err != nil {
			fmt.Fprintln(os.Stderr, "slow:", err)
			return 3
		}
		for _, l := range ls {
			go func() {
				for {
					time.Sleep(every) // the slowness under test, not a wait for an event
					c, err := l.Accept()
					if err != nil {
						return
					}
					fmt.Fprintln(c, "served")
					c.Close()
				}
			}()
		}
		<-term
		return 0
	}
}

// observed tees the supervisor's log into the test log and an observer.
func observed(t *testing.T) (supervisor.Option, *observer.ObservedLogs) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := zap.New(zapcore.NewTee(zaptest.NewLogger(t).Core(), core))
	return supervisor.WithLogger(l), logs
}

// waitLog waits for a log entry with message msg and returns it.
func waitLog(t *testing.T, logs *observer.ObservedLogs, msg string, match func(observer.LoggedEntry) bool) observer.LoggedEntry {
	t.Helper()
	ctx := deadline(t)
	for {
		for _, e := range logs.FilterMessage(msg).All() {
			if match == nil || match(e) {
				return e
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("no log %q before the deadline", msg)
		case <-time.After(10 * time.Millisecond): // the observer has no notification
		}
	}
}

// TestNotServedWarning: workers that say they are ready but never accept
// (like python3 -m http.server, which ignores fd 3) leave connections in
// the kernel's accept queue; the supervisor warns, once, naming the socket
// and the workers, and Metrics and Stats show the queue and the state. A
// TCP and a unix socket, whose queues come from TCP_INFO and sock_diag.
func TestNotServedWarning(t *testing.T) {
	ctx := deadline(t)
	logOpt, logs := observed(t)
	unixAddr := fmt.Sprintf("web=unix://@handoff-test-deaf-%d", os.Getpid())
	const after = 500 * time.Millisecond
	f := newFixture(t, "deaf", nil, logOpt, supervisor.WithWorkers(2),
		supervisor.WithListen(unixAddr), supervisor.WithNotServedAfter(after))
	f.run(ctx)
	w1, w2 := f.waitReady(ctx), f.waitReady(ctx)

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func(network, addr string) {
		c, err := net.DialTimeout(network, addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	began := time.Now()
	for range 3 {
		dial("tcp", f.sock.Addr().String())
	}
	for range 2 {
		dial("unix", "@"+strings.TrimPrefix(unixAddr, "web=unix://@"))
	}
	m := f.s.Stats()
	if len(m.Sockets) != 2 {
		t.Fatalf("stats: %d sockets, want 2: %+v", len(m.Sockets), m.Sockets)
	}
	// WithListen's sockets come first, then WithSockets'.
	for i, want := range []uint32{2, 3} {
		q := m.Sockets[i]
		if !q.Known || q.Len != want || q.Max == 0 {
			t.Errorf("socket %d: %+v, want a known queue of %d connections and a backlog", i, q, want)
		}
	}

	for _, name := range []string{"test", "web"} {
		e := waitLog(t, logs, "listening socket not served: connections wait in its accept queue and no worker takes them",
			func(e observer.LoggedEntry) bool { return e.ContextMap()["socket"] == name })
		took := time.Since(began)
		cm := e.ContextMap()
		ready, _ := cm["ready_workers"].([]any)
		var pids []int
		for _, p := range ready {
			switch n := p.(type) {
			case int64:
				pids = append(pids, int(n))
			case int:
				pids = append(pids, n)
			}
		}
		slices.Sort(pids)
		want := []int{w1.Pid, w2.Pid}
		slices.Sort(want)
		if !slices.Equal(pids, want) {
			t.Errorf("warning for %s names workers %v, want %v", name, cm["ready_workers"], want)
		}
		if took < after {
			t.Errorf("warning for %s after %v, before the configured %v", name, took, after)
		}
		t.Logf("warned about %s after %v (configured %v): %v", name, took.Round(time.Millisecond), after, cm)
	}
	st := f.s.Stats()
	if len(st.Sockets) != 2 || !st.Sockets[0].NotServed || !st.Sockets[1].NotServed || st.Sockets[1].Len != 3 {
		t.Errorf("stats sockets %+v, want both not served, 3 waiting on the TCP one", st.Sockets)
	}
	// One more connection: still not served, and not warned again.
	dial("tcp", f.sock.Addr().String())
	f.s.Shutdown(ctx)
	if n := len(logs.FilterMessage("listening socket not served: connections wait in its accept queue and no worker takes them").All()); n != 2 {
		t.Errorf("%d warnings, want one per socket", n)
	}
}

// TestQueueUnderSlowWorker: a worker that accepts slowly under a burst of
// connections shows a non-empty accept queue, every connection is served,
// and since the queue goes down, it is not reported as not served.
func TestQueueUnderSlowWorker(t *testing.T) {
	ctx := deadline(t)
	logOpt, logs := observed(t)
	// The check's time is far above the worker's pace (20 connections in ~2 s), so that a
	// stall of a loaded machine is not taken for a socket nobody serves.
	f := newFixture(t, "slow", []string{"TEST_SLOW_EVERY=100ms"}, logOpt, supervisor.WithNotServedAfter(10*time.Second))
	f.run(ctx)
	f.waitReady(ctx)
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	dialed := make(chan struct{}, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", f.sock.Addr().String(), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			dialed <- struct{}{}
			c.SetDeadline(time.Now().Add(time.Until(deadlineOf(t))))
			line, err := bufio.NewReader(c).ReadString('\n')
			if err != nil || line != "served\n" {
				errs <- fmt.Errorf("answer %q: %v", line, err)
			}
		}()
	}
	for range n {
		<-dialed
	}
	// All n are connected, and the worker takes one per 100ms.
	q := f.s.Stats().Sockets[0]
	if !q.Known || q.Len == 0 || q.Len > n || q.Max < q.Len {
		t.Errorf("queue under a burst of %d connections to a slow worker: %+v, want a non-empty queue", n, q)
	}
	t.Logf("queue after %d connections: %d (backlog %d)", n, q.Len, q.Max)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	f.s.Shutdown(ctx)
	if w := logs.FilterMessage("listening socket not served: connections wait in its accept queue and no worker takes them").All(); len(w) > 0 {
		t.Errorf("a slow but serving worker was reported as not served: %v", w[0].ContextMap())
	}
}

func deadlineOf(t *testing.T) time.Time {
	d, _ := deadline(t).Deadline()
	return d
}

// TestMetricsCount: the counters and histograms follow the events caused:
// starts, a roll, a SIGKILL, a failed roll, and the drains they caused.
func TestMetricsCount(t *testing.T) {
	ctx := deadline(t)
	logOpt, _ := observed(t)
	f := newFixture(t, "notify", []string{"TEST_FAIL_GEN=3"}, logOpt, supervisor.WithWorkers(2), supervisor.WithMinUptime(0),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()))
	if m := f.s.Stats(); m.Starts != 0 || m.Sockets != nil {
		t.Errorf("stats before Run: %+v", m)
	}
	f.run(ctx)
	f.waitReady(ctx)
	f.waitReady(ctx)
	if err := f.s.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	st := f.s.Stats()
	victim := st.Workers[0]
	if err := syscall.Kill(victim.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-f.exited
	for range 3 { // two of the roll, then the replacement
		f.waitReady(ctx)
	}
	if err := f.s.Roll(ctx); err == nil {
		t.Fatal("the roll to generation 3, whose workers exit at once, succeeded")
	}
	// The two retired workers of generation 1 exit, and the failed one.
	m := waitStats(ctx, t, f.s, "4 exits", func(st supervisor.Stats) bool {
		e := st.Exits
		return e.Clean+e.Failed+e.Signal+e.Watchdog+e.Recycled+e.Retired >= 4
	})
	var want supervisor.Stats
	want.Generation, want.Starts = 2, 6
	want.Exits.Signal, want.Exits.Retired, want.Exits.Failed = 1, 2, 1
	// The roll to 3 fails at its first new worker, and is rolled back.
	want.Rolls.Completed, want.Rolls.RolledBack = 1, 1
	if m.Generation != want.Generation || m.Starts != want.Starts || m.Rolls != want.Rolls || m.Exits != want.Exits {
		t.Errorf("stats %+v, want generation %d, %d starts, rolls %+v, exits %+v", m, want.Generation, want.Starts, want.Rolls, want.Exits)
	}
	if m.RollDuration.Count != 2 || m.SpawnToReady.Count != 5 || m.DrainDuration.Count != 2 {
		t.Errorf("histograms: %d rolls, %d spawn-to-ready, %d drains; want 2, 5, 2",
			m.RollDuration.Count, m.SpawnToReady.Count, m.DrainDuration.Count)
	}
	var sum uint64
	for _, c := range m.SpawnToReady.Counts {
		sum += c
	}
	if sum != m.SpawnToReady.Count || len(m.SpawnToReady.Counts) != len(m.SpawnToReady.Bounds)+1 {
		t.Errorf("spawn-to-ready histogram %+v: buckets do not add up", m.SpawnToReady)
	}
	ready := 0
	for _, w := range m.Workers {
		if w.State == supervisor.Ready {
			ready++
		}
	}
	if ready != 2 || m.GenerationsAlive() < 1 {
		t.Errorf("workers %+v, generations alive %d", m.Workers, m.GenerationsAlive())
	}
	st = f.s.Stats()
	if st.LastRoll == nil || st.LastRoll.Result != supervisor.RollRolledBack || st.LastRoll.Generation != 3 || st.LastRoll.Error == "" {
		t.Errorf("last roll %+v, want the rolled-back roll to generation 3", st.LastRoll)
	}
	if len(st.Slots) != 2 {
		t.Fatalf("slots %+v, want 2", st.Slots)
	}
	// The last unasked exit of each slot: the victim's (SIGKILL), unless the
	// failed roll's first new worker, which started in slot 0, came after.
	sl := st.Slots[victim.Slot]
	if e := sl.LastExit; e == nil || !(e.Reason == "signal" && e.Pid == victim.Pid || e.Reason == "failed" && e.Generation == 3) {
		t.Errorf("slot %d: last exit %+v, want the SIGKILL of %d or the failure of generation 3", victim.Slot, e, victim.Pid)
	}
	if e := st.Slots[0].LastExit; e == nil || e.Reason != "failed" || e.Generation != 3 || e.Status != "exit status 1" {
		t.Errorf("slot 0: last exit %+v, want the failure of generation 3", e)
	}
}

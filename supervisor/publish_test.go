//go:build linux

package supervisor_test

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
)

// TestPublishPaced: N workers starting at once publish Stats' snapshot a
// number of times set by the time they take, not by N: the first event of
// a burst publishes, the rest at most every 50 ms. A snapshot copies every
// worker, so one per event made a start (and a stop) quadratic: 100
// workers' start spent 0.3 ms of the supervisor's CPU per worker on it.
// Workers say READY=1, each an event. With hooks installed that do not
// ask for Stats, the pace is the same: a hook call published the snapshot
// before it ran, 3 per worker started (BeforeSpawn, AfterSpawn, OnReady).
func TestPublishPaced(t *testing.T) {
	nop := supervisor.Hooks{
		BeforeSpawn: func(*supervisor.Spawn) error { return nil },
		AfterSpawn:  func(supervisor.WorkerInfo) {},
		OnReady:     func(supervisor.WorkerInfo) {},
	}
	t.Run("no hooks", func(t *testing.T) { testPublishPaced(t) })
	t.Run("hooks", func(t *testing.T) { testPublishPaced(t, supervisor.WithHooks(nop)) })
}

func testPublishPaced(t *testing.T, opts ...supervisor.Option) {
	const n = 48
	ctx := deadline(t)
	sock, err := listener.Listen(listener.Addr{Name: "test", Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	logOpt, logs := observed(t)
	s, err := supervisor.New(supervisor.Command{Path: exe, Args: []string{exe}, Env: workerEnv(helperEnv + "=notify")},
		append([]supervisor.Option{supervisor.WithSockets(sock), logOpt, supervisor.WithWorkers(n),
			supervisor.WithReadiness(supervisor.ReadyOnNotify())}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	runErr := make(chan error, 1)
	began := time.Now()
	go func() { runErr <- s.Run(rctx) }()
	for logs.FilterMessage("worker ready").Len() < n {
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d workers ready at the deadline", logs.FilterMessage("worker ready").Len(), n)
		case <-time.After(10 * time.Millisecond): // the observer has no notification
		}
	}
	took := time.Since(began)
	published := s.Published()
	// The last event of the burst is published too, within 50 ms.
	for ready := 0; ready < n; {
		ready = 0
		for _, w := range s.LastStats().Workers {
			if w.State == supervisor.Ready {
				ready++
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("LastStats shows %d of %d workers ready at the deadline", ready, n)
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	if err := recv(ctx, t, runErr, "Run's return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	// The loop's first, then one per 50 ms interval at most, and the
	// first of a burst once more per interval.
	limit := 1 + 2*int(took/(50*time.Millisecond)+1)
	t.Logf("%d workers ready in %v: %d snapshots published (limit %d)", n, took.Round(time.Millisecond), published, limit)
	if published > int64(limit) {
		t.Errorf("%d workers' start published %d snapshots in %v, want at most %d", n, published, took.Round(time.Millisecond), limit)
	}
}

//go:build unix

package supervisor_test

import (
	"context"
	"math/bits"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"go.uber.org/zap/zaptest/observer"

	"github.com/handoff-dev/handoff/supervisor"
)

// TestStopSweepsBounded: a stop of N workers lists the workers' process
// trees (all of /proc, then every worker's tree) a number of times that
// grows with log N, not once per exit: the stop's own listing, one each
// time the live workers have halved, and at most one per sweep interval
// (100 ms) in between. A listing per exit made a stop of 1,000 workers
// quadratic (33 s where the workers alone take 8 s).
func TestStopSweepsBounded(t *testing.T) {
	const n = 48
	ctx := deadline(t)
	core, logs := observer.New(zapcore.DebugLevel)
	log := zap.New(zapcore.NewTee(zaptest.NewLogger(t, zaptest.Level(zapcore.InfoLevel)).Core(), core))
	f := newFixture(t, "serve", nil, supervisor.WithLogger(log), supervisor.WithWorkers(n),
		supervisor.WithStopTimeout(time.Minute))
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	f.run(rctx)
	for range n {
		f.waitReady(ctx)
	}
	before := logs.FilterMessage("listed the workers' process trees").Len()
	began := time.Now()
	cancel()
	if err := recv(ctx, t, f.runErr, "Run's return"); err != nil {
		t.Fatalf("Run: %v", err)
	}
	f.runErr <- nil // for the fixture's cleanup
	took := time.Since(began)
	sweeps := logs.FilterMessage("listed the workers' process trees").Len() - before
	// The stop's listing, one per halving down to none, one per interval.
	limit := 1 + bits.Len(n) + 1 + int(took/(100*time.Millisecond)) + 1
	t.Logf("a stop of %d workers took %v and listed the trees %d times (limit %d)", n, took.Round(time.Millisecond), sweeps, limit)
	if sweeps > limit {
		t.Errorf("a stop of %d workers listed the trees %d times in %v, want at most %d", n, sweeps, took.Round(time.Millisecond), limit)
	}
}

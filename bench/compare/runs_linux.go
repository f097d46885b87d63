package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"

	"github.com/handoff-dev/handoff/bench/load"
)

// startTimeout bounds a subject's start, to answering requests.
const startTimeout = 30 * time.Second

// loadOptions is the load of every run: keep-alive clients that never
// retry, GET and POST alternating.
func (h *harness) loadOptions(d time.Duration) []load.Option {
	return []load.Option{load.WithClients(h.cfg.clients), load.WithMode(load.Raw), load.WithMethod(load.Mixed),
		load.WithDuration(d)}
}

// withSubject starts s, runs f with its address, stops it, and sweeps
// whatever it left behind.
func (h *harness) withSubject(ctx context.Context, r *loadRun, s subject, f func(addr string)) {
	sctx, cancel := context.WithTimeout(ctx, startTimeout)
	addr, err := s.start(sctx)
	cancel()
	if err == nil {
		f(addr)
	} else {
		r.err = fmt.Errorf("starting %s: %w", s.name(), err)
	}
	if err := s.stop(); err != nil {
		r.err = errors.Join(r.err, fmt.Errorf("stopping %s: %w", s.name(), err))
	}
	alive, _, err := orphans.Sweep()
	r.leftover = alive
	if err != nil || alive > 0 {
		r.err = errors.Join(r.err, fmt.Errorf("%s left %d processes behind (killed and reaped) %v", s.name(), alive, err))
	}
}

// throughputRun measures s under steady load for the window.
func (h *harness) throughputRun(ctx context.Context, s subject, round int) *loadRun {
	r := &loadRun{scenario: scThroughput, subject: s.name(), round: round}
	h.withSubject(ctx, r, s, func(addr string) {
		l, err := load.Start(ctx, addr, h.loadOptions(h.cfg.warmup+h.cfg.window+time.Minute)...)
		if err != nil {
			r.err = err
			return
		}
		defer func() { r.res = l.Stop() }()
		if r.err = sleep(ctx, h.cfg.warmup); r.err != nil {
			return
		}
		r.steady.From = time.Now()
		r.err = sleep(ctx, h.cfg.window)
		r.steady.To = time.Now()
	})
	h.progress(r)
	return r
}

// rollCounter is a subject whose log tells its rolls apart (handoff's
// generations): how many the signals since t started, and how long each
// took from its own start.
type rollCounter interface {
	rolls(since time.Time) (rollCount, bool)
}

// restartRun measures s under load through count restarts after a steady
// window. With -pace completion each signal goes out once the previous
// restart was seen complete and a quarter of -every has passed, and at
// least -every after the previous signal, so that every subject completes
// every restart; with -pace clock, one every -every whatever happens.
func (h *harness) restartRun(ctx context.Context, scenario string, s subject, round, count int) *loadRun {
	r := &loadRun{scenario: scenario, subject: s.name(), round: round}
	every, clock := h.cfg.every, h.cfg.pace == paceClock
	h.withSubject(ctx, r, s, func(addr string) {
		total := h.cfg.warmup + h.cfg.steady + time.Duration(count)*max(every, restartBound) + h.cfg.tail
		l, err := load.Start(ctx, addr, h.loadOptions(total+time.Minute)...)
		if err != nil {
			r.err = err
			return
		}
		defer func() { r.res = l.Stop() }()
		if r.err = sleep(ctx, h.cfg.warmup); r.err != nil {
			return
		}
		r.steady.From = time.Now()
		if r.err = sleep(ctx, h.cfg.steady); r.err != nil {
			return
		}
		r.steady.To = time.Now()
		t0 := time.Now()
		r.during.From = t0
		next := t0
		for i := range count {
			if r.err = sleepUntil(ctx, next); r.err != nil {
				return
			}
			sent := time.Now()
			deadline := sent.Add(restartBound)
			if clock {
				deadline = t0.Add(time.Duration(i+1)*every - every/20)
			}
			rctx, cancel := context.WithDeadline(ctx, deadline)
			sent, took, err := s.restart(rctx)
			cancel()
			if clock {
				next = t0.Add(time.Duration(i+1) * every)
			} else {
				next = later(sent.Add(every), time.Now().Add(every/4))
			}
			r.signals = append(r.signals, sent)
			r.during.To = next
			var rerr *restartError
			switch {
			case err == nil:
				r.took = append(r.took, took)
			case errors.Is(err, errIncomplete):
				r.pending++
			case errors.As(err, &rerr):
				r.failed = append(r.failed, rerr.why)
			default:
				r.err = fmt.Errorf("restart %d of %d: %w", i+1, count, err)
				return
			}
		}
		if r.err = sleepUntil(ctx, next); r.err != nil {
			return
		}
		r.err = sleep(ctx, h.cfg.tail)
		if rc, ok := s.(rollCounter); ok {
			if n, ok := rc.rolls(t0); ok {
				r.rolls = &n
				r.took = n.took // each roll timed from its own start, the late ones too
			}
		}
	})
	h.progress(r)
	return r
}

// progress tells the person waiting how a run went.
func (h *harness) progress(r *loadRun) {
	msg := fmt.Sprintf("%s round %d: %s", r.scenario, r.round, r.subject)
	if r.res != nil {
		all := r.res.Stats()
		msg += fmt.Sprintf(": %d requests, %d failed, %.0f req/s", all.Requests, all.Failed(), all.RPS)
		if len(r.signals) > 0 {
			msg += fmt.Sprintf(", %d signals (%d seen complete", len(r.signals), len(r.took))
			if r.rolls != nil {
				msg += fmt.Sprintf(", %d folded", r.rolls.folded(len(r.signals)))
			}
			msg += ")"
		}
	}
	if r.err != nil {
		msg += fmt.Sprintf("; error: %v", r.err)
	}
	h.logf("%s", msg)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// trafficSubjects returns a constructor per subject of a traffic kind:
// handoff and tableflip with -h2c for h2, nginx (if installed) with an
// h2c port or a slow /stream file.
func (h *harness) trafficSubjects(kind string) []func() (subject, error) {
	var args []string
	if kind == tfH2 {
		args = []string{"-h2c"}
	}
	subs := []func() (subject, error){
		func() (subject, error) {
			return &handoffSubject{bin: h.bins.example, workers: h.cfg.workers, args: args, echo: h.echo}, nil
		},
		func() (subject, error) {
			return &tableflipSubject{bin: h.bins.tableflip, args: args, echo: h.echo}, nil
		},
	}
	if p := h.peers["nginx"]; p.path != "" {
		subs = append(subs, func() (subject, error) {
			dir, err := tempDir(h.tmp, "nginx")
			if err != nil {
				return nil, err
			}
			s := &nginxSubject{bin: p.path, prefix: dir, workers: h.cfg.workers, h2c: kind == tfH2, echo: h.echo}
			if kind == tfStreams {
				s.stream = streamBody()
			}
			return s, nil
		})
	}
	return subs
}

// trafficEstimate is how long the traffic scenario should take.
func (h *harness) trafficEstimate() time.Duration {
	one := h.cfg.warmup + time.Duration(h.cfg.traffic)*h.cfg.every + h.cfg.tail + 3*time.Second
	return time.Duration(h.cfg.rounds*len(trafficKinds)*len(h.trafficSubjects(tfH2))) * one
}

func (h *harness) runTraffic(ctx context.Context, res *results) {
	for round := 1; round <= h.cfg.rounds; round++ {
		for _, kind := range trafficKinds {
			for _, mk := range h.trafficSubjects(kind) {
				if ctx.Err() != nil {
					return
				}
				s, err := mk()
				var r *trafficRun
				if err != nil {
					r = &trafficRun{kind: kind, subject: "?", round: round, err: err}
				} else {
					r = h.trafficRun(ctx, kind, s, round)
				}
				res.traffic = append(res.traffic, r)
			}
		}
	}
}

// trafficRun drives one kind of traffic at s through cfg.traffic restarts,
// one every pace, then stops the clients and lets their requests finish.
func (h *harness) trafficRun(ctx context.Context, kind string, s subject, round int) *trafficRun {
	r := &trafficRun{kind: kind, subject: s.name(), round: round}
	lr := &loadRun{}
	h.withSubject(ctx, lr, s, func(addr string) {
		stop := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			t, err := runTraffic(ctx, kind, addr, stop)
			r.t = t
			done <- err
		}()
		defer func() {
			select {
			case <-stop:
			default:
				close(stop)
			}
			if err := <-done; err != nil {
				r.err = errors.Join(r.err, err)
			}
		}()
		if r.err = sleep(ctx, h.cfg.warmup); r.err != nil {
			return
		}
		every := h.cfg.every
		t0 := time.Now()
		for i := range h.cfg.traffic {
			tick := t0.Add(time.Duration(i) * every)
			if r.err = sleepUntil(ctx, tick); r.err != nil {
				return
			}
			rctx, cancel := context.WithDeadline(ctx, tick.Add(every-every/20))
			_, _, err := s.restart(rctx)
			cancel()
			r.restarts++
			var rerr *restartError
			switch {
			case err == nil:
				r.seen++
			case errors.Is(err, errIncomplete):
			case errors.As(err, &rerr):
				r.failedRestarts = append(r.failedRestarts, rerr.why)
			default:
				r.err = fmt.Errorf("restart %d of %d: %w", i+1, h.cfg.traffic, err)
				return
			}
		}
		if r.err = sleepUntil(ctx, t0.Add(time.Duration(h.cfg.traffic)*every)); r.err != nil {
			return
		}
		if r.err = sleep(ctx, h.cfg.tail); r.err != nil {
			return
		}
		close(stop)
		// Streams in flight finish (3 s); the stop then sees no request.
		r.err = <-done
		done <- nil
	})
	r.err = errors.Join(r.err, lr.err)
	r.leftover = lr.leftover
	msg := fmt.Sprintf("traffic %s round %d: %s", kind, round, r.subject)
	if r.t != nil {
		msg += fmt.Sprintf(": %d ok, %d failed, %d restarts (%d seen complete)", r.t.ok, r.t.failed, r.restarts, r.seen)
	}
	if r.err != nil {
		msg += fmt.Sprintf("; error: %v", r.err)
	}
	h.logf("%s", msg)
	return r
}

package main

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// restartBound bounds the wait for one restart to complete.
const restartBound = 10 * time.Second

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// reconnectSubjects is the restarts scenario's subjects: handoff rolling,
// tableflip, gunicorn and nginx where installed.
func (h *harness) reconnectSubjects() []func() (subject, error) { return h.restartSubjects(false) }

// reconnectsEstimate is how long the reconnects scenario should take.
func (h *harness) reconnectsEstimate() time.Duration {
	one := h.cfg.warmup + time.Duration(h.cfg.reconnects)*h.cfg.every*5/4 + h.cfg.tail + 3*time.Second
	return time.Duration(h.cfg.rounds*len(reconnectModes)*len(h.reconnectSubjects())) * one
}

func (h *harness) runReconnects(ctx context.Context, res *results) {
	for round := 1; round <= h.cfg.rounds; round++ {
		for _, mk := range h.reconnectSubjects() {
			for _, mode := range reconnectModes {
				if ctx.Err() != nil {
					return
				}
				s, err := mk()
				if err != nil {
					res.reconnects = append(res.reconnects, &reconnectRun{Subject: "?", Mode: mode, Round: round, Err: err.Error()})
					continue
				}
				res.reconnects = append(res.reconnects, h.reconnectRun(ctx, s, mode, round))
			}
		}
	}
}

// reconnectRun runs clients at s (through the TLS tunnel in mode rcTLS)
// through cfg.reconnects restarts, and counts their connections.
func (h *harness) reconnectRun(ctx context.Context, s subject, mode string, round int) *reconnectRun {
	r := &reconnectRun{Subject: s.name(), Mode: mode, Round: round, Clients: h.cfg.clients, Every: h.cfg.every}
	lr := &loadRun{}
	var err error
	h.withSubject(ctx, lr, s, func(addr string) { err = h.reconnectLoad(ctx, s, mode, addr, r) })
	if err = errors.Join(err, lr.err); err != nil {
		r.Err = err.Error()
	}
	r.Leftover = lr.leftover
	msg := fmt.Sprintf("reconnects %s round %d: %s: %d requests, %d failed, %d dials (kernel %d), %s reconnects per restart, %d of %d restarts seen complete",
		mode, round, r.Subject, r.Requests, r.Failed, r.Dials, r.Kernel.Conns, ratef(r.perRestart()), r.Seen, r.Restarts)
	if mode == rcTLS {
		msg += fmt.Sprintf("; %d handshakes after the first restart, server CPU %v", r.Handshakes, r.ServerCPU.Round(time.Microsecond))
	}
	if r.Err != "" {
		msg += "; error: " + r.Err
	}
	h.logf("%s", msg)
	return r
}

func (h *harness) reconnectLoad(ctx context.Context, s subject, mode, addr string, r *reconnectRun) (err error) {
	target := addr
	opts := h.loadOptions(h.cfg.warmup + time.Duration(h.cfg.reconnects)*restartBound + h.cfg.tail + time.Minute)
	var proxy *tlsProxy
	var conns *connLog // the connections the kernel should see
	if mode == rcPlain {
		conns = &connLog{}
		opts = append(opts, load.WithDial(conns.dial))
	}
	if mode == rcTLS {
		if proxy, err = startTLSProxy(addr); err != nil {
			return err
		}
		defer proxy.close()
		target = proxy.addr()
		conns = &proxy.ups
		opts = append(opts, load.WithDial(proxy.dial))
	}
	// The kernel watches the plaintext connections to the subject: the
	// clients' own in mode plain, the tunnel's (one per client connection)
	// in mode tls. A TLS client closing with the tunnel's close_notify
	// unread resets its connection, which then leaves no TIME_WAIT behind.
	ap, err := netip.ParseAddrPort(addr)
	if err != nil {
		return err
	}
	watch := watchConns(ap, reconnectWatchPeriod)
	l, err := load.Start(ctx, target, opts...)
	if err != nil {
		watch.finish()
		return err
	}
	defer func() {
		res := l.Stop()
		r.Kernel = watch.finish()
		if proxy != nil {
			proxy.close() // every tunnel connection closed and noted
		}
		r.Connected = conns.count()
		r.Kernel.Missed, r.Kernel.MissedLongest = conns.unseen(watch.seen())
		st := res.Stats()
		r.Requests, r.Failed, r.Dials = st.Requests, st.Failed(), res.Dials
		if len(res.Failures) > 0 {
			f := res.Failures[0]
			r.FirstFailure = fmt.Sprintf("%s on a reused=%v connection: %s: %v", f.Method, f.Reused, f.Kind, f.Err)
		}
	}()
	if err := sleep(ctx, h.cfg.warmup); err != nil {
		return err
	}
	// Restarts one every -every, each after the previous one was seen
	// complete and the clients had a quarter of -every to come back.
	t0 := time.Now()
	every, next := h.cfg.every, t0
	for i := range h.cfg.reconnects {
		if err := sleepUntil(ctx, next); err != nil {
			return err
		}
		sent := time.Now()
		rctx, cancel := context.WithTimeout(ctx, restartBound)
		_, _, err := s.restart(rctx)
		cancel()
		next = later(sent.Add(every), time.Now().Add(every/4))
		r.Restarts++
		var rerr *restartError
		switch {
		case err == nil:
			r.Seen++
		case errors.Is(err, errIncomplete):
		case errors.As(err, &rerr):
			r.FailedRestarts = append(r.FailedRestarts, rerr.why)
		default:
			return fmt.Errorf("restart %d of %d: %w", i+1, h.cfg.reconnects, err)
		}
	}
	if err := sleepUntil(ctx, next); err != nil {
		return err
	}
	err = sleep(ctx, h.cfg.tail)
	if proxy != nil {
		r.Handshakes, r.ServerCPU, r.HandshakesAll = proxy.server.since(t0)
		_, r.ClientCPU, _ = proxy.client.since(t0)
		r.UpstreamDials = int(proxy.upDials.Load())
		r.TLSParams = proxy.negotiated()
	}
	return err
}

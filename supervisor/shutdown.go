package supervisor

import (
	"time"

	"go.uber.org/zap"
)

// WithShutdownDelay makes a stop wait d before it signals any worker: the
// workers keep serving while Draining reports true, so that a load
// balancer's readiness probe (Kubernetes') fails and the endpoint is taken
// out of rotation before the sockets close. Then the stop proceeds as
// usual. A second stop signal, Close, or Shutdown's context ending cut the
// delay short. The default, 0, stops at once.
func WithShutdownDelay(d time.Duration) Option {
	return optionFunc(func(o *options) { o.shutdownDelay = d })
}

// Draining reports whether a stop has begun (including its shutdown
// delay): a readiness probe should fail from then on. Safe from any
// goroutine, without a call into the run goroutine.
func (s *Supervisor) Draining() bool { return s.draining.Load() }

// requestStop begins a stop after the shutdown delay, if there is one.
func (t *table) requestStop(timeout time.Duration) {
	if t.stopping || t.delaying {
		return
	}
	t.s.draining.Store(true)
	if d := t.o.shutdownDelay; d > 0 {
		t.delaying = true
		t.delayTimeout = timeout
		t.delayUntil = time.Now().Add(d)
		t.log.Info("shutdown delay: failing readiness while still serving", zap.Duration("delay", d))
		return
	}
	t.stop(timeout)
}

// delayOver ends the shutdown delay when its time has come, or at once
// with now zero.
func (t *table) delayOver(now time.Time) {
	if !t.delaying || !now.IsZero() && now.Before(t.delayUntil) {
		return
	}
	t.delaying = false
	t.log.Info("shutdown delay over: stopping")
	t.stop(t.delayTimeout)
}

package supervisor

import (
	"fmt"
	"slices"

	"go.uber.org/zap"
)

// defaultMaxDraining is how many generations may drain at their own pace
// at once unless WithMaxDraining says otherwise.
const defaultMaxDraining = 8

// WithMaxDraining caps the generations draining at once (default 8; 0
// removes the cap). A roll that retires a generation beyond the cap
// hurries the oldest draining generations: their workers get the stop
// signal a second time, which a worker.Run worker takes as "the drain
// deadline is now" (request contexts are cancelled, streams end with their
// final chunk, WebSockets close with 1001, idle connections are closed),
// so they exit within a sixth of their drain timeout instead of lingering
// until their clients leave. Workers of other kinds see the same signal
// twice; the supervisor still kills any worker at its stop timeout.
//
// The trade-off: a retired worker lingers while it has idle keep-alive
// connections (closing them races clients reusing them), so rolls faster
// than clients come back pile generations up; the cap bounds that pile,
// and hurrying a generation may fail a request of a client that reuses an
// idle connection at the very moment it is closed.
func WithMaxDraining(k int) Option {
	return optionFunc(func(o *options) { o.maxDraining = k })
}

// validateMaxDraining checks the cap.
func validateMaxDraining(k int) error {
	if k < 0 {
		return fmt.Errorf("supervisor: max draining %d is negative", k)
	}
	return nil
}

// capDraining hurries the oldest draining generations while more than
// WithMaxDraining of them drain at their own pace. It runs on the table's
// goroutine after a worker is retired.
func (t *table) capDraining() {
	k := t.o.maxDraining
	if k <= 0 || t.stopping {
		return
	}
	var gens []uint64
	for w := range t.live {
		if w.info.State == Stopping && !w.hurried && !slices.Contains(gens, w.info.Generation) {
			gens = append(gens, w.info.Generation)
		}
	}
	if len(gens) <= k {
		return
	}
	slices.Sort(gens)
	hurry := gens[:len(gens)-k]
	for w := range t.live {
		if w.info.State == Stopping && !w.hurried && slices.Contains(hurry, w.info.Generation) {
			w.hurried = true
			t.log.Info("hurrying draining worker", append(workerFields(w.info), zap.Int("max_draining", k))...)
			t.signal(w, t.o.stopSignal)
		}
	}
}

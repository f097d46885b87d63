package supervisor

import (
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
)

// WithMetrics serves handler(s), for s the supervisor, on addr (a
// listener.ParseAddr form, e.g. "tcp://127.0.0.1:9100"): the supervisor
// binds addr when Run starts and serves it until Run returns. Package
// metrics has the Prometheus handler: supervisor.WithMetrics(addr,
// metrics.Handler). The socket survives an in-place upgrade like the
// workers' sockets: the same pid keeps answering, and scrapes that arrive
// during the exec wait in the kernel's queue for the new program.
// Keep-alive is off: each scrape has a connection of its own, so none is
// cut by the exec.
func WithMetrics(addr string, handler func(*Supervisor) http.Handler) Option {
	return optionFunc(func(o *options) { o.metrics.addr, o.metrics.handler = addr, handler })
}

// validate checks the options of WithMetrics.
func (o *metricsOptions) validate() error {
	if o.addr == "" {
		return nil
	}
	if o.handler == nil {
		return errNoHandler
	}
	a, err := listener.ParseAddr(o.addr)
	if err != nil {
		return fmt.Errorf("supervisor: metrics address: %w", err)
	}
	o.parsed = a
	return nil
}

var errNoHandler = errors.New("supervisor: WithMetrics: the handler is nil")

// openEndpoints binds (or takes over from the previous program) the
// sockets of the metrics and health endpoints, and starts serving metrics;
// health is served from the run loop's start (serveEndpoints), once the
// workers are resumed.
func (t *table) openEndpoints(st *upgradeState) error {
	t.metrics = &endpoint{name: "metrics", handler: t.o.metrics.handler, parsed: t.o.metrics.parsed}
	t.health = &endpoint{name: "health", handler: healthHandler, parsed: t.o.healthParsed}
	var mfd, hfd int
	if st != nil {
		mfd, hfd = st.MetricsFd, st.HealthFd
	}
	if err := t.metrics.open(t, mfd); err != nil {
		return err
	}
	if err := t.health.open(t, hfd); err != nil {
		return err
	}
	return t.metrics.serve(t)
}

// serveEndpoints serves the endpoints not yet served.
func (t *table) serveEndpoints() {
	for _, e := range []*endpoint{t.metrics, t.health} {
		if e == nil {
			continue
		}
		if err := e.serve(t); err != nil {
			t.log.Error("endpoint", zap.Error(err))
		}
	}
}

// stopEndpoints stops serving; the sockets stay open (an upgrade hands
// them over).
func (t *table) stopEndpoints() {
	for _, e := range []*endpoint{t.metrics, t.health} {
		if e != nil {
			e.stop()
		}
	}
}

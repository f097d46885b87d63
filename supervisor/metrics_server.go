package supervisor

import (
	"errors"
	"fmt"
	"net/http"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/endpoint"
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

// httpEndpoint is the metrics or the health endpoint (package
// internal/endpoint); nil or its srv nil: not served.
type httpEndpoint struct {
	name    string
	handler func(*Supervisor) http.Handler
	srv     *endpoint.Server
}

// fd is the socket's descriptor for the upgrade state, 0 without one.
func (e *httpEndpoint) fd() (int, error) {
	if e == nil {
		return 0, nil
	}
	return e.srv.Fd()
}

// addr is the address served, "" without a socket.
func (e *httpEndpoint) addr() string {
	if e == nil {
		return ""
	}
	return e.srv.Addr()
}

// openEndpoints binds (or takes over from the previous program) the
// sockets of the metrics and health endpoints, and starts serving metrics;
// health is served from the run loop's start (serveEndpoints), once the
// workers are resumed.
func (t *table) openEndpoints(st *upgradeState) error {
	var mfd, hfd int
	if st != nil {
		mfd, hfd = st.MetricsFd, st.HealthFd
	}
	var err error
	t.metrics = &httpEndpoint{name: "metrics", handler: t.o.metrics.handler}
	if t.metrics.srv, err = t.openEndpoint("metrics", t.o.metrics.parsed, mfd); err != nil {
		return err
	}
	t.health = &httpEndpoint{name: "health", handler: healthHandler}
	if t.health.srv, err = t.openEndpoint("health", t.o.healthParsed, hfd); err != nil {
		return err
	}
	return t.metrics.serve(t)
}

// serve starts serving, if there is a socket and it is not served.
func (e *httpEndpoint) serve(t *table) error {
	if e == nil || e.srv == nil {
		return nil
	}
	if err := e.srv.Serve(e.handler(t.s), t.log); err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	return nil
}

func (t *table) openEndpoint(name string, a listener.Addr, fd int) (*endpoint.Server, error) {
	srv, err := endpoint.Open(name, a, fd)
	if err != nil {
		return nil, fmt.Errorf("supervisor: %w", err)
	}
	if srv != nil && fd == 0 {
		t.log.Info("serving "+name, zap.String("addr", srv.Addr()))
	}
	return srv, nil
}

// serveEndpoints serves the endpoints not yet served.
func (t *table) serveEndpoints() {
	for _, e := range []*httpEndpoint{t.metrics, t.health} {
		if err := e.serve(t); err != nil {
			t.log.Error("endpoint", zap.Error(err))
		}
	}
}

// stopEndpoints stops serving; the sockets stay open (an upgrade hands
// them over).
func (t *table) stopEndpoints() {
	for _, e := range []*httpEndpoint{t.metrics, t.health} {
		if e != nil {
			e.srv.Stop()
		}
	}
}

// closeEndpoints stops serving and closes the sockets.
func (t *table) closeEndpoints() {
	for _, e := range []*httpEndpoint{t.metrics, t.health} {
		if e == nil {
			continue
		}
		if err := e.srv.Close(); err != nil {
			t.log.Warn("removing a socket file at the stop", zap.Error(err))
		}
	}
}

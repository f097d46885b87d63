package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

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
		return errors.New("supervisor: WithMetrics: the handler is nil")
	}
	a, err := listener.ParseAddr(o.addr)
	if err != nil {
		return fmt.Errorf("supervisor: metrics address: %w", err)
	}
	o.parsed = a
	return nil
}

// metricsServer serves the metrics endpoint on a duplicate of t.metricsSock.
type metricsServer struct {
	srv  *http.Server
	done chan struct{}
}

// openMetrics binds the metrics address, or takes the socket the previous
// program handed over (fd > 0). An inherited socket is kept even if this
// program was configured with another address; without WithMetrics, it is
// closed.
func (t *table) openMetrics(fd int) error {
	var err error
	switch {
	case fd > 0 && t.o.metrics.addr == "":
		sock, err := listener.AdoptFd(fd, "metrics")
		if err == nil {
			sock.Close()
		}
		return nil
	case fd > 0:
		t.metricsSock, err = listener.AdoptFd(fd, "metrics")
	case t.o.metrics.addr != "":
		t.metricsSock, err = listener.Listen(t.o.metrics.parsed)
		if err == nil {
			t.log.Info("serving metrics", zap.Stringer("addr", t.metricsSock.Addr()))
		}
	}
	if err != nil {
		return fmt.Errorf("supervisor: metrics: %w", err)
	}
	return t.serveMetrics()
}

// serveMetrics starts serving the metrics socket.
func (t *table) serveMetrics() error {
	if t.metricsSock == nil || t.msrv != nil {
		return nil
	}
	ln, err := socketListener(t.metricsSock)
	if err != nil {
		return fmt.Errorf("supervisor: metrics: %w", err)
	}
	m := &metricsServer{
		srv: &http.Server{
			Handler:           t.o.metrics.handler(t.s),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          zap.NewStdLog(t.log),
		},
		done: make(chan struct{}),
	}
	m.srv.SetKeepAlivesEnabled(false)
	t.msrv = m
	t.bg.Add(1)
	go func() {
		defer t.bg.Done()
		defer close(m.done)
		if err := m.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.log.Error("metrics endpoint", zap.Error(err))
		}
	}()
	return nil
}

// stopMetrics stops serving: the requests in progress end (for at most
// a few seconds), the connections not yet accepted stay queued on the
// socket, which stays open.
func (t *table) stopMetrics() {
	m := t.msrv
	if m == nil {
		return
	}
	t.msrv = nil
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}

// metricsFd is the metrics socket's descriptor for the upgrade state, 0
// without one.
func (t *table) metricsFd() (fd int, err error) {
	if t.metricsSock == nil {
		return 0, nil
	}
	err = t.metricsSock.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

package worker

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/handoff-dev/handoff/listener"
)

// RunHTTP runs srv as an HTTP worker on every inherited listener: Run with
// the Handler HTTP returns.
func RunHTTP(ctx context.Context, srv *http.Server, opts ...DrainOption) error {
	return Run(ctx, HTTP(srv, opts...))
}

// HTTP returns a Handler that serves srv on every listener and, when its
// context is done, drains without failing a request: see ServeAndDrain.
// A zero srv.ReadHeaderTimeout is set to 30 s, so an idle client cannot
// hold a connection open without sending a request.
func HTTP(srv *http.Server, opts ...DrainOption) Handler {
	return func(ctx context.Context, ls []listener.Inherited) error {
		if srv.ReadHeaderTimeout == 0 {
			srv.ReadHeaderTimeout = 30 * time.Second
		}
		nls := make([]net.Listener, len(ls))
		for i, l := range ls {
			nls[i] = l.Listener
		}
		return ServeAndDrain(ctx, srv, nls, opts...)
	}
}

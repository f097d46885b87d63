package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/supervisor"
)

// healthServer answers probes: /livez 200 while handoff runs; /readyz 200
// once the workers are started and until a stop begins (its
// -shutdown-delay included), 503 otherwise.
type healthServer struct {
	srv  *http.Server
	done chan struct{}
}

func startHealth(addr string, sup *supervisor.Supervisor, log *zap.Logger) (*healthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("-health %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-sup.Running():
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		if sup.Draining() {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	h := &healthServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second},
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint", zap.Error(err))
		}
	}()
	log.Info("health endpoint", zap.String("addr", ln.Addr().String()))
	return h, nil
}

func (h *healthServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if h.srv.Shutdown(ctx) != nil {
		h.srv.Close()
	}
	<-h.done
}

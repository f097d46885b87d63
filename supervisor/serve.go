package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
)

// Serve is the one-call entry point for a program that is both supervisor
// and worker. Started by a supervisor (IsWorker), it runs h as a worker;
// otherwise it becomes the supervisor of this same binary, re-executed with
// the same arguments as its workers, configured by opts:
//
//	func main() {
//		err := supervisor.ServeHTTP(context.Background(), mux,
//			supervisor.WithListen("tcp://127.0.0.1:8080"), supervisor.WithWorkers(4))
//		if err != nil { log.Fatal(err) }
//	}
//
// The supervisor stops gracefully on the first SIGINT or SIGTERM (bounded
// by the stop timeout) and kills its workers on the second. Serve returns
// nil after a requested stop.
func Serve(ctx context.Context, h Handler, opts ...Option) error {
	if IsWorker() {
		return RunWorker(ctx, h)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	s, err := New(Command{Path: exe, Args: os.Args}, opts...)
	if err != nil {
		return err
	}
	return s.runWithSignals(ctx)
}

// ServeHTTP is Serve for an http.Handler.
func ServeHTTP(ctx context.Context, h http.Handler, opts ...Option) error {
	return Serve(ctx, HTTPHandler(&http.Server{Handler: h}), opts...)
}

// runWithSignals runs the supervisor, stopping it gracefully on the first
// SIGINT or SIGTERM and killing the workers on the second.
func (s *Supervisor) runWithSignals(ctx context.Context) error {
	sigs := make(chan os.Signal, 2048)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	defer signal.Stop(sigs)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	for stops := 0; ; {
		select {
		case err := <-errc:
			return err
		case sig := <-sigs:
			stops++
			if stops == 1 {
				s.log.Info("signal: stopping gracefully", zap.Stringer("signal", sig))
				cancel()
			} else {
				s.log.Warn("signal again: killing workers", zap.Stringer("signal", sig))
				s.kill()
			}
		}
	}
}

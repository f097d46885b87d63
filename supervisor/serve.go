package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"os"
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
// The supervisor handles the process's signals (WithSignals: HUP rolls,
// USR2 upgrades in place, TERM and INT stop) and waits for each worker's
// READY=1 (ReadyOnNotify; HTTPHandler sends it); opts may override both.
// Serve returns nil after a requested stop.
func Serve(ctx context.Context, h Handler, opts ...Option) error {
	if IsWorker() {
		return RunWorker(ctx, h)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("supervisor: %w", err)
	}
	opts = append([]Option{WithReadiness(ReadyOnNotify()), WithSignals()}, opts...)
	s, err := New(Command{Path: exe, Args: os.Args}, opts...)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// ServeHTTP is Serve for an http.Handler, served by HTTPHandler.
func ServeHTTP(ctx context.Context, h http.Handler, opts ...Option) error {
	return Serve(ctx, HTTPHandler(&http.Server{Handler: h}), opts...)
}

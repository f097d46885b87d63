package supervisor

import (
	"context"
	"fmt"
	"net/http"
	"os"

	"github.com/handoff-dev/handoff/worker"
)

// Main is the whole of main for a program that is both supervisor and
// worker. Started by a supervisor (worker.IsWorker), it runs h as a worker
// (worker.Run); otherwise it becomes the supervisor of this same binary,
// re-executed with the same arguments as its workers, configured by opts:
//
//	func main() {
//		srv := &http.Server{Handler: mux}
//		err := supervisor.MainHTTP(context.Background(), srv,
//			supervisor.WithListen("tcp://127.0.0.1:8080"), supervisor.WithWorkers(4))
//		if err != nil { log.Fatal(err) }
//	}
//
// Everything main does before it calls Main runs in the supervisor and in
// every worker, once per process: put set-up that must happen once (a
// migration, a warm cache shared by file) behind worker.IsWorker, and set-up
// each worker needs (a database pool) in h.
//
// The supervisor handles the process's signals (WithSignals: HUP rolls,
// USR2 upgrades in place, TERM and INT stop) and waits for each worker's
// READY=1 (ReadyOnNotify; worker.Run sends it when h first accepts); opts
// may override both. Main returns nil after a requested stop.
func Main(ctx context.Context, h worker.Handler, opts ...Option) error {
	if worker.IsWorker() {
		return worker.Run(ctx, h)
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

// MainHTTP is Main for an HTTP server: its workers serve srv with
// worker.HTTP, which drains without failing a request.
func MainHTTP(ctx context.Context, srv *http.Server, opts ...Option) error {
	return Main(ctx, worker.HTTP(srv), opts...)
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/listener"
)

// Handler is the body of a worker: it serves on the inherited listeners
// until ctx is cancelled, which happens when the supervisor asks the worker
// to stop (the stop signal, SIGTERM by default), then drains and returns.
// The listeners are closed after it returns.
type Handler func(ctx context.Context, ls []listener.Inherited) error

// Identity tells a worker who it is, from the variables the supervisor set.
type Identity struct {
	Worker        int    // slot index, 0 to N-1
	Generation    uint64 // the generation it belongs to
	SupervisorPID int
}

// WorkerIdentity returns the identity the supervisor gave this process, and
// false when the process was not started by a handoff supervisor.
func WorkerIdentity() (Identity, bool) {
	var id Identity
	w, ok := os.LookupEnv(EnvWorker)
	if !ok {
		return id, false
	}
	var err1, err2, err3 error
	id.Worker, err1 = strconv.Atoi(w)
	id.Generation, err2 = strconv.ParseUint(os.Getenv(EnvGeneration), 10, 64)
	id.SupervisorPID, err3 = strconv.Atoi(os.Getenv(EnvSupervisorPID))
	return id, errors.Join(err1, err2, err3) == nil
}

// IsWorker reports whether this process was started by a handoff
// supervisor as one of its workers.
func IsWorker() bool {
	_, ok := WorkerIdentity()
	return ok
}

// RunWorker runs h as a worker: it takes the inherited listeners (from
// handoff or from systemd socket activation) and cancels h's context on
// SIGTERM or SIGINT; it closes the listeners when h returns.
//
// Started by handoff, it also pings the watchdog when one is set
// (listener.Watchdog), and watches the liveness pipe: if the supervisor
// dies, even by SIGKILL, h's context is cancelled and the process exits
// after at most LivenessGrace, so no worker outlives its supervisor.
func RunWorker(ctx context.Context, h Handler) error {
	ls, err := listener.Inherit()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	var bg sync.WaitGroup
	live, err := livenessPipe()
	if err != nil {
		cancel()
		return fmt.Errorf("worker: %w", err)
	}
	if live != nil {
		bg.Go(func() { watchLiveness(live, cancel) })
	}
	bg.Go(func() {
		if err := listener.Watchdog(ctx); err != nil {
			fmt.Fprintln(os.Stderr, "handoff worker:", err)
		}
	})
	err = h(ctx, ls)
	cancel()
	if live != nil {
		live.Close() // ends watchLiveness
	}
	bg.Wait()
	return err
}

// LivenessGrace is how long a worker whose supervisor died may drain
// before RunWorker ends the process.
const LivenessGrace = 500 * time.Millisecond

// livenessPipe returns the read end of the supervisor's liveness pipe, or
// nil when the process was not started by a handoff supervisor.
func livenessPipe() (*os.File, error) {
	v, ok := os.LookupEnv(EnvLivenessFd)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvLivenessFd)
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		return nil, fmt.Errorf("%s=%q is not a descriptor", EnvLivenessFd, v)
	}
	f := os.NewFile(uintptr(fd), "liveness")
	if err := setCloexec(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s=%d: %w", EnvLivenessFd, fd, err)
	}
	return f, nil
}

// watchLiveness waits for end-of-file on the liveness pipe: the supervisor
// is gone. It then cancels the worker's context and ends the process after
// LivenessGrace. It returns early when f is closed.
func watchLiveness(f *os.File, cancel context.CancelFunc) {
	var b [1]byte
	for {
		_, err := f.Read(b[:])
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return // closed by RunWorker
		}
	}
	fmt.Fprintf(os.Stderr, "handoff worker %d: the supervisor is gone; exiting\n", os.Getpid())
	cancel()
	time.AfterFunc(LivenessGrace, func() { os.Exit(1) })
}

// RunWorkerHTTP runs h as an HTTP worker on every inherited listener; see
// HTTPHandler.
func RunWorkerHTTP(ctx context.Context, h http.Handler, opts ...DrainOption) error {
	return RunWorker(ctx, HTTPHandler(&http.Server{Handler: h}, opts...))
}

// HTTPHandler returns a Handler that serves srv on every listener, tells
// the supervisor it is ready (listener.Ready), and when its context is
// cancelled drains without failing a request: see ServeAndDrain.
func HTTPHandler(srv *http.Server, opts ...DrainOption) Handler {
	return func(ctx context.Context, ls []listener.Inherited) error {
		if srv.ReadHeaderTimeout == 0 {
			srv.ReadHeaderTimeout = 30 * time.Second
		}
		nls := make([]net.Listener, len(ls))
		for i, l := range ls {
			nls[i] = l.Listener
		}
		// The sockets already queue connections; Serve accepts them at once.
		if err := listener.Ready(); err != nil {
			return fmt.Errorf("worker: %w", err)
		}
		return ServeAndDrain(ctx, srv, nls, opts...)
	}
}

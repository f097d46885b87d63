package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/cloexec"
	"github.com/handoff-dev/handoff/listener"
)

// The variables a handoff supervisor sets in each worker's environment,
// beside those of the systemd protocol (LISTEN_FDS, LISTEN_FDNAMES,
// LISTEN_PID, NOTIFY_SOCKET, WATCHDOG_USEC). A worker written in another
// language reads them directly.
const (
	EnvWorker        = "HANDOFF_WORKER"         // the slot index, 0 to N-1
	EnvGeneration    = "HANDOFF_GENERATION"     // the generation the worker belongs to
	EnvSupervisorPID = "HANDOFF_SUPERVISOR_PID" // the supervisor's pid
	// EnvLivenessFd names the worker's read end of the liveness pipe: it
	// reads end-of-file when the supervisor is gone (see Run).
	EnvLivenessFd = "HANDOFF_LIVENESS_FD"
	// EnvHandoverFd names the worker's end of its socket pair with the
	// supervisor for connection hand-over (package internal/connpass's
	// protocol): a draining worker gives its idle connections to the next
	// generation over it. Unset when the supervisor runs without hand-over.
	EnvHandoverFd = "HANDOFF_HANDOVER_FD"
)

// Handler is the body of a worker: it serves on the inherited listeners
// until ctx is done, which happens when the supervisor asks the worker to
// stop (SIGTERM or SIGINT) or dies, then drains and returns. The listeners
// are closed after it returns.
//
// The worker tells its supervisor it is ready (READY=1) the first time the
// handler calls Accept on any of the listeners: a handler that accepts is
// serving, and one that never does is never reported ready. A handler
// that serves the descriptors some other way calls [Ready] itself.
type Handler func(ctx context.Context, ls []listener.Inherited) error

// Identity tells a worker who it is, from the variables the supervisor set.
type Identity struct {
	Worker        int    // slot index, 0 to N-1
	Generation    uint64 // the generation it belongs to
	SupervisorPID int
}

// Self returns the identity the supervisor gave this process, and false
// when the process was not started by a handoff supervisor.
func Self() (Identity, bool) {
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
	_, ok := Self()
	return ok
}

// Run runs h as a worker: it takes the inherited listeners (from handoff
// or from systemd socket activation, see listener.Inherit), sends READY=1
// when h first accepts on one of them, and cancels h's context on SIGTERM
// or SIGINT; it closes the listeners when h returns.
//
// Started by handoff, it also pings the watchdog when one is set
// ([Watchdog]), and watches the liveness pipe: if the supervisor dies, even
// by SIGKILL, h's context is cancelled and the process exits after at most
// LivenessGrace, so no worker outlives its supervisor.
//
// A second SIGTERM or SIGINT hurries the drain: ServeAndDrain (HTTP,
// RunHTTP) moves its deadline to now, cancelling what is left cleanly
// before closing it.
func Run(ctx context.Context, h Handler) error {
	inh, err := listener.Inherit()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	var once sync.Once
	var readyErr error
	ready := func() { once.Do(func() { readyErr = Ready() }) }
	ls := make([]listener.Inherited, len(inh))
	for i, l := range inh {
		ls[i] = listener.Inherited{Name: l.Name, Listener: &readyListener{Listener: l.Listener, ready: ready}}
	}
	defer func() {
		for _, l := range inh {
			l.Close()
		}
	}()
	// The first SIGTERM or SIGINT cancels ctx: the drain starts. The
	// second closes hurry: the drain deadline is now.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	hurry := make(chan struct{})
	ctx, cancel := context.WithCancel(context.WithValue(ctx, hurryKey{}, hurry))
	defer cancel()
	var bg sync.WaitGroup
	live, err := livenessPipe()
	if err != nil {
		return fmt.Errorf("worker: %w", err)
	}
	done := make(chan struct{})
	bg.Go(func() { watchSignals(sigs, done, cancel, hurry) })
	if live != nil {
		bg.Go(func() { watchLiveness(live, cancel) })
	}
	bg.Go(func() {
		if err := Watchdog(ctx); err != nil && !logRun(slog.LevelError, "worker: watchdog", slog.Int("pid", os.Getpid()), slog.Any("error", err)) {
			fmt.Fprintln(os.Stderr, "handoff worker:", err)
		}
	})
	err = h(ctx, ls)
	cancel()
	close(done)
	if live != nil {
		live.Close() // ends watchLiveness
	}
	bg.Wait()
	if readyErr != nil {
		err = errors.Join(err, fmt.Errorf("worker: %w", readyErr))
	}
	return err
}

// watchSignals cancels the worker's context at the first stop signal and
// closes hurry at the second, until done is closed.
func watchSignals(sigs <-chan os.Signal, done <-chan struct{}, cancel context.CancelFunc, hurry chan struct{}) {
	n := 0
	for {
		select {
		case <-sigs:
			n++
			switch n {
			case 1:
				cancel()
			case 2:
				close(hurry)
			}
		case <-done:
			return
		}
	}
}

// readyListener sends READY=1, once for all of a worker's listeners, when
// the handler first accepts. Unwrap returns the listener it wraps, for a
// handler that needs its concrete type (*net.TCPListener, *net.UnixListener).
type readyListener struct {
	net.Listener
	ready func()
}

func (l *readyListener) Accept() (net.Conn, error) {
	l.ready()
	return l.Listener.Accept()
}

// Unwrap returns the inherited listener itself.
func (l *readyListener) Unwrap() net.Listener { return l.Listener }

// LivenessGrace is how long a worker whose supervisor died may drain
// before Run ends the process.
const LivenessGrace = 500 * time.Millisecond

// livenessPipe returns the read end of the supervisor's liveness pipe, or
// nil when the process was not started by a handoff supervisor.
func livenessPipe() (*os.File, error) {
	fd, ok, err := inheritedFd(EnvLivenessFd)
	if !ok || err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "liveness")
	if err := cloexec.Set(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s=%d: %w", EnvLivenessFd, fd, err)
	}
	return f, nil
}

// inheritedFd takes the descriptor the environment variable name gives
// (ok false when it is unset) and unsets the variable, so that the
// worker's own children do not take it too.
func inheritedFd(name string) (fd int, ok bool, err error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return -1, false, nil
	}
	os.Unsetenv(name)
	fd, err = strconv.Atoi(v)
	if err != nil || fd < 3 {
		return -1, true, fmt.Errorf("%s=%q is not a descriptor", name, v)
	}
	return fd, true, nil
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
			return // closed by Run
		}
	}
	if !logRun(slog.LevelWarn, "worker: the supervisor is gone; exiting", slog.Int("pid", os.Getpid())) {
		fmt.Fprintf(os.Stderr, "handoff worker %d: the supervisor is gone; exiting\n", os.Getpid())
	}
	cancel()
	time.AfterFunc(LivenessGrace, func() { os.Exit(1) })
}

package supervisor

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/connpass"
	"github.com/handoff-dev/handoff/worker"
)

// WithHandover turns connection hand-over on or off (default on, on
// Linux). On, each worker gets one end of a socket pair with the
// supervisor, its number in HANDOFF_HANDOVER_FD (worker.EnvHandoverFd),
// right after the liveness pipe's; a draining worker of package worker
// gives its idle connections back through it, and the supervisor passes
// each to a ready worker of the newest generation serving its address
// (package internal/connpass). Workers that do not speak it are
// unaffected. Off: no pair, no variable.
func WithHandover(on bool) Option { return optionFunc(func(o *options) { o.handover = on }) }

// HandoverStats counts the connections workers handed over (WithHandover),
// since the supervisor's process started: an upgrade in place hands them
// on.
type HandoverStats struct {
	// Handed: taken by another worker. Returned: given back to the worker
	// that handed them, as no other could take them. Refused: a worker
	// refused one (it was then offered to the next). Failed: closed without
	// reaching a worker, its sender gone too. InFlight: held by the
	// supervisor now, waiting for a worker's acknowledgement.
	Handed, Returned, Refused, Failed, InFlight uint64
}

// openRouter starts the hand-over router, unless hand-over is off.
func (t *table) openRouter() {
	if !t.o.handover || runtime.GOOS != "linux" {
		return
	}
	t.router = connpass.NewRouter(func(pid int, err error) {
		if errors.Is(err, io.ErrClosedPipe) { // the worker is exiting
			t.log.Debug("hand-over", zap.Int("pid", pid), zap.Error(err))
			return
		}
		t.log.Warn("hand-over", zap.Int("pid", pid), zap.Error(err))
	})
}

// handoverPair returns the supervisor's end of a new worker's pair and the
// worker's end, nil for both with hand-over off.
func (t *table) handoverPair() (*connpass.Conn, *os.File, error) {
	if t.router == nil {
		return nil, nil, nil
	}
	local, remote, err := connpass.Pair()
	if err != nil {
		return nil, nil, fmt.Errorf("hand-over: %w", err)
	}
	return local, remote, nil
}

// handoverStarted gives the router the pair of a started worker.
func (t *table) handoverStarted(w *child, local *connpass.Conn) {
	if local == nil {
		return
	}
	if err := t.router.Add(w.info.Pid, w.info.Generation, w.info.Slot, local); err != nil {
		t.log.Warn("hand-over", append(workerFields(w.info), zap.Error(err))...)
	}
}

// handoverEnv is the variable telling a worker its end's number: the fd
// after the liveness pipe's.
func handoverEnv(liveFd int) string { return fmt.Sprintf("%s=%d", worker.EnvHandoverFd, liveFd+1) }

func (t *table) handoverReady(w *child) {
	if t.router != nil {
		t.router.Ready(w.info.Pid)
	}
}

func (t *table) handoverStopping(w *child) {
	if t.router != nil {
		t.router.Stopping(w.info.Pid)
	}
}

// handoverExited tells the router that w exited: it reads what w still
// sent and forgets it, on its own goroutine (the loop does not wait).
func (t *table) handoverExited(w *child) {
	if t.router != nil {
		t.router.Exited(w.info.Pid)
	}
}

func (t *table) handoverStats() HandoverStats {
	if t.router == nil {
		return HandoverStats{}
	}
	s := t.router.Stats()
	return HandoverStats{Handed: s.Handed, Returned: s.Returned, Refused: s.Refused, Failed: s.Failed, InFlight: s.InFlight}
}

// handoverSnapshot pauses the router for an upgrade and returns its state,
// whose descriptors stay open across the exec.
func (t *table) handoverSnapshot() (*connpass.RouterState, error) {
	if t.router == nil {
		return nil, nil
	}
	if err := t.router.Pause(); err != nil {
		return nil, err
	}
	return t.router.State()
}

// handoverResume reads on after an upgrade's exec failed.
func (t *table) handoverResume() error {
	if t.router == nil {
		return nil
	}
	return t.router.Resume()
}

// handoverRestore takes over the router state of the program before.
func (t *table) handoverRestore(st *connpass.RouterState) {
	if st == nil {
		return
	}
	if t.router == nil { // hand-over turned off by this program
		for _, fd := range st.Fds() {
			os.NewFile(uintptr(fd), "handover").Close()
		}
		return
	}
	if err := t.router.Restore(st); err != nil {
		t.log.Warn("hand-over after the upgrade", zap.Error(err))
	}
}

// handoverForget forgets, once the workers are adopted, those of st that
// were not (they exited): what they sent is read first.
func (t *table) handoverForget(st *connpass.RouterState) {
	if st == nil || t.router == nil {
		return
	}
	for _, w := range st.Workers {
		if t.byPid[w.Pid] == nil {
			t.router.Remove(w.Pid)
		}
	}
}

func (t *table) closeRouter() {
	if t.router != nil {
		t.router.Close()
	}
}

// handoverFds are the descriptors of st to keep open across the exec.
func handoverFds(st *connpass.RouterState) []int {
	if st == nil {
		return nil
	}
	return slices.Clip(st.Fds())
}

package supervisor

import (
	"errors"
	"fmt"
	"time"

	"github.com/handoff-dev/handoff/reap"
)

// A WorkerExitError is the exit of a worker that failed to start. When Run
// gives up (WithMaxStartFailures), its error wraps the last one, so that
// ExitCode can pass the worker's status on.
type WorkerExitError struct {
	Slot   int
	Status reap.Status
}

func (e *WorkerExitError) Error() string { return e.Status.String() }

// ExitCode is the exit status a program whose Run returned err should exit
// with, by the convention of inits such as tini and of shells:
//
//   - 0 for nil: a requested stop (a signal, a cancelled context, Shutdown),
//     however the workers exited during it;
//   - when Run gave up because a worker kept failing, that worker's last exit
//     code, or 128+n if signal n killed it (137 for SIGKILL, 143 for SIGTERM);
//     1 if it exited 0 (it gave up anyway) or could not be started at all;
//   - 1 for any other error.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var we *WorkerExitError
	if errors.As(err, &we) {
		switch st := we.Status; {
		case st.Signal != 0:
			return 128 + int(st.Signal)
		case st.Code > 0 && st.Code < 256:
			return st.Code
		}
	}
	return 1
}

// workerExit is the error for a worker's start failure: its status, with
// how long it ran.
func workerExit(w *child, st reap.Status) error {
	return fmt.Errorf("worker %d exited after %v: %w", w.info.Pid,
		st.Time.Sub(w.info.Started).Round(time.Millisecond), &WorkerExitError{Slot: w.info.Slot, Status: st})
}

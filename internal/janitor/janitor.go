package janitor

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/cloexec"
	"github.com/handoff-dev/handoff/reap"
)

const (
	// Env, set to 1, makes a supervisor binary run as the janitor instead of its main: see
	// runJanitor.
	Env = "HANDOFF_JANITOR"
	// EnvStop tells the janitor how to stop the workers of a supervisor that died: "SIGNAL
	// TIMEOUT", the signal's number and the milliseconds to wait for them before SIGKILL (0:
	// wait for ever). Without it the janitor sends SIGKILL at once.
	EnvStop = "HANDOFF_JANITOR_STOP"
	// EnvState hands the janitor ("PID:FD", its pid and the write end of its pipe) across an
	// in-place upgrade.
	EnvState = "HANDOFF_JANITOR_STATE"
)

// A Janitor is the supervisor's end of a running janitor: its process and the write end of
// its pipe. Its methods are for one goroutine.
type Janitor struct {
	proc   *reap.Process
	w      *os.File // the pipe's write end
	failed bool     // a write failed and was reported
}

// Start starts a janitor through rp: the running binary again (/proc/self/exe), in a process
// group of its own (a terminal's ^C is not for it), with stdin the read end of a new pipe,
// stdout devnull and stderr this process's; it stops the workers with sig, then SIGKILL after
// timeout.
func Start(rp *reap.Reaper, devnull *os.File, sig syscall.Signal, timeout time.Duration) (*Janitor, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("janitor: %w", err)
	}
	defer r.Close()
	proc, err := start(rp, []*os.File{r, devnull, os.Stderr}, []string{Env + "=1",
		fmt.Sprintf("%s=%d %d", EnvStop, sig, timeout.Milliseconds())})
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("janitor: %w", err)
	}
	return &Janitor{proc: proc, w: w}, nil
}

// Inherited takes over the janitor an upgrade handed on in EnvState, which it removes from
// the environment. Without the variable it returns nil and no error.
func Inherited(rp *reap.Reaper) (*Janitor, error) {
	v, ok := os.LookupEnv(EnvState)
	if !ok {
		return nil, nil
	}
	os.Unsetenv(EnvState)
	p, f, ok := strings.Cut(v, ":")
	pid, err1 := strconv.Atoi(p)
	fd, err2 := strconv.Atoi(f)
	if !ok || err1 != nil || err2 != nil || pid < 1 || fd < 3 {
		return nil, fmt.Errorf("janitor: %s=%q: want PID:FD", EnvState, v)
	}
	w := os.NewFile(uintptr(fd), "janitor")
	if err := cloexec.Set(w); err != nil {
		w.Close()
		return nil, fmt.Errorf("janitor pipe: %w", err)
	}
	proc, err := rp.Adopt(pid)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("janitor: %w", err)
	}
	return &Janitor{proc: proc, w: w}, nil
}

// Readopt watches the janitor again with a new reaper, after an upgrade's exec failed. On
// failure the pipe is closed (the janitor, if alive, stops the workers it knows).
func (j *Janitor) Readopt(rp *reap.Reaper) error {
	proc, err := rp.Adopt(j.proc.Pid())
	if err != nil {
		j.w.Close()
		return fmt.Errorf("janitor: %w", err)
	}
	j.proc = proc
	return nil
}

// Process is the janitor's process.
func (j *Janitor) Process() *reap.Process { return j.proc }

// Started tells the janitor about a worker it must stop if the supervisor dies.
func (j *Janitor) Started(pid int) error { return j.tell("+" + strconv.Itoa(pid)) }

// Reaped tells the janitor that a worker is gone.
func (j *Janitor) Reaped(pid int) error { return j.tell("-" + strconv.Itoa(pid)) }

// Cgroups tells the janitor the directory of the workers' cgroups, so that it stops (and
// removes) them too.
func (j *Janitor) Cgroups(base string) error { return j.tell("c" + base) }

// tell writes one line. Only the first failure is returned: the janitor has died, and the
// supervisor learns it from its exit.
func (j *Janitor) tell(line string) error {
	if _, err := j.w.Write([]byte(line + "\n")); err != nil && !j.failed {
		j.failed = true
		return fmt.Errorf("janitor: %w", err)
	}
	return nil
}

// Exec returns the variable and the descriptor that hand the janitor to the program an
// upgrade execs; the descriptor is close-on-exec, so whoever execs must clear that.
func (j *Janitor) Exec() (env string, fd int, err error) {
	rc, err := j.w.SyscallConn()
	if err != nil {
		return "", 0, fmt.Errorf("janitor pipe: %w", err)
	}
	if err := rc.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return "", 0, fmt.Errorf("janitor pipe: %w", err)
	}
	return fmt.Sprintf("%s=%d:%d", EnvState, j.proc.Pid(), fd), fd, nil
}

// Close closes the pipe: the janitor stops every worker still listed, then exits.
func (j *Janitor) Close() error { return j.w.Close() }

// Stop closes the pipe after a clean stop, when no worker is left to kill, and waits for the
// janitor to exit, for at most 5 seconds before it is killed.
func (j *Janitor) Stop() {
	j.w.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := j.proc.Wait(ctx); err != nil {
		j.proc.Signal(syscall.SIGKILL)
		j.proc.Wait(context.Background())
	}
}

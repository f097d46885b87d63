package handover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/internal/launch"
	"github.com/handoff-dev/handoff/reap"
)

// The preflight run. Before the exec, the old program runs the new binary
// with its own argv and HANDOFF_PREFLIGHT=3: the program starts as it would
// after the exec, and its supervisor, once it has checked everything, calls
// EndPreflight, which writes PreflightOK to fd 3 and exits 0. So a build
// whose flags, main or set-up fail is refused before the exec.
const (
	EnvPreflight = "HANDOFF_PREFLIGHT"
	PreflightOK  = "handoff-preflight-ok"

	// PreflightTimeout is how long a preflight run has to answer.
	PreflightTimeout = 10 * time.Second
)

// InPreflight reports whether this program is a preflight run.
func InPreflight() bool { return os.Getenv(EnvPreflight) != "" }

// EndPreflight ends a preflight run, if this is one: it says so on the
// descriptor HANDOFF_PREFLIGHT names, and exits 0. Otherwise it returns.
func EndPreflight() {
	v := os.Getenv(EnvPreflight)
	if v == "" {
		return
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		fmt.Fprintf(os.Stderr, "handoff: %s=%q: want a descriptor number of 3 or more\n", EnvPreflight, v)
		os.Exit(2)
	}
	f := os.NewFile(uintptr(fd), "preflight")
	if _, err := fmt.Fprintln(f, PreflightOK); err != nil {
		fmt.Fprintf(os.Stderr, "handoff: preflight: %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// A Preflight is a preflight run in progress.
type Preflight struct {
	proc *reap.Process
	r    *os.File // its answer
}

// StartPreflight starts path, through rp, as a preflight run: with argv,
// env after HANDOFF_PREFLIGHT=3, and stdio as its descriptors 0 to 2.
func StartPreflight(rp *reap.Reaper, path string, argv, env []string, stdio [3]*os.File) (*Preflight, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer w.Close()
	env = append([]string{EnvPreflight + "=3"}, env...)
	fds, err := launch.RawFds([]*os.File{stdio[0], stdio[1], stdio[2], w})
	if err != nil {
		r.Close()
		return nil, err
	}
	p, err := rp.Start(path, argv, &syscall.ProcAttr{Env: env, Files: fds})
	if err != nil {
		r.Close()
		return nil, err
	}
	return &Preflight{proc: p, r: r}, nil
}

// Wait waits for the run's answer, for at most timeout or until quit is
// closed, then kills the run (nothing if it exited) and collects its exit.
// It returns why the new program is refused, nil if it is fit to exec; an
// error too if quit was closed first.
func (p *Preflight) Wait(timeout time.Duration, quit <-chan struct{}) error {
	defer p.r.Close()
	var out []byte
	var err error
	read := make(chan struct{})
	go func() {
		defer close(read)
		out, _ = io.ReadAll(io.LimitReader(p.r, 4096))
	}()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-read:
	case <-timer.C:
		err = fmt.Errorf("no answer within %v", timeout)
	case <-quit:
		err = errQuit
	}
	p.proc.Signal(syscall.SIGKILL) // nothing if it exited
	p.r.SetReadDeadline(time.Now())
	<-read
	st, werr := p.proc.Wait(context.Background())
	switch {
	case err != nil:
	case werr != nil:
		err = werr
	case !st.Success():
		err = fmt.Errorf("preflight run: %s", st)
	case strings.TrimSpace(string(out)) != PreflightOK:
		err = fmt.Errorf("it did not reach supervisor.New (it said %q)", truncate(string(out), 80))
	}
	return err
}

var errQuit = errors.New("preflight run: stopped")

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

package janitor

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/reap"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	if d, ok := t.Deadline(); ok {
		ctx, cancel = context.WithDeadline(context.Background(), d)
	}
	t.Cleanup(cancel)
	return ctx
}

// TestJanitorStopsWorkersWhenThePipeCloses: the janitor stops a listed worker's group with
// the stop signal once its pipe reads end-of-file, leaves an unlisted one alone, and exits 0.
func TestJanitorStopsWorkersWhenThePipeCloses(t *testing.T) {
	rp, err := reap.New()
	if err != nil {
		t.Fatal(err)
	}
	defer rp.Close()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer devnull.Close()
	j, err := Start(rp, devnull, syscall.SIGTERM, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	sleeper := func() *exec.Cmd {
		c := exec.Command("sleep", "600")
		c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		return c
	}
	listed, gone, unlisted := sleeper(), sleeper(), sleeper()
	defer unlisted.Wait()
	defer unlisted.Process.Kill()
	for _, err := range []error{j.Started(listed.Process.Pid), j.Started(gone.Process.Pid), j.Reaped(gone.Process.Pid)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	gone.Process.Kill()
	gone.Wait()

	env, fd, err := j.Exec()
	if want := EnvState + "=" + strconv.Itoa(j.Process().Pid()) + ":" + strconv.Itoa(fd); err != nil || env != want {
		t.Errorf("Exec: %q, %v; want %q", env, err, want)
	}
	j.Close()
	if d, ok := t.Deadline(); ok { // a janitor that does nothing fails the test, not the run
		tm := time.AfterFunc(time.Until(d)-time.Second, func() { listed.Process.Kill() })
		defer tm.Stop()
	}
	err = listed.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGTERM {
		t.Errorf("the listed worker: %v, want killed by SIGTERM", err)
	}
	st, err := j.Process().Wait(testCtx(t))
	if err != nil || !st.Success() {
		t.Errorf("the janitor: %v, %v; want exit 0", st, err)
	}
	if err := unlisted.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the unlisted process: %v, want it alive", err)
	}
	if err := j.Started(1234); err == nil || !errors.Is(err, os.ErrClosed) {
		t.Errorf("Started after Close: %v, want os.ErrClosed", err)
	}
	if err := j.Started(1234); err != nil {
		t.Errorf("a second failed write: %v, want it reported once", err)
	}
}

func TestInheritedBadState(t *testing.T) {
	for _, v := range []string{"", "12", "x:4", "12:2", "0:5"} {
		t.Setenv(EnvState, v)
		if j, err := Inherited(nil); j != nil || err == nil || !strings.Contains(err.Error(), "want PID:FD") {
			t.Errorf("%s=%q: %v, %v", EnvState, v, j, err)
		}
		if _, ok := os.LookupEnv(EnvState); ok {
			t.Errorf("%s=%q left in the environment", EnvState, v)
		}
	}
	os.Unsetenv(EnvState)
	if j, err := Inherited(nil); j != nil || err != nil {
		t.Errorf("without %s: %v, %v; want nil, nil", EnvState, j, err)
	}
}

func TestParseJanitorStop(t *testing.T) {
	for v, want := range map[string]struct {
		sig unix.Signal
		d   time.Duration
	}{
		"15 2500": {unix.SIGTERM, 2500 * time.Millisecond},
		"2 0":     {unix.SIGINT, 0},
		"":        {unix.SIGKILL, 0},
		"15":      {unix.SIGKILL, 0},
		"99 10":   {unix.SIGKILL, 0},
		"15 -1":   {unix.SIGKILL, 0},
	} {
		if sig, d := parseJanitorStop(v); sig != want.sig || d != want.d {
			t.Errorf("%q: %v %v, want %v %v", v, sig, d, want.sig, want.d)
		}
	}
}

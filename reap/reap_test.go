//go:build linux

package reap

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// startHelper starts helper name under r with files as fds 0, 1, 2, ...
func startHelper(t *testing.T, r *Reaper, files []int, name string, args ...string) *Process {
	t.Helper()
	path, argv, attr := helperArgv(t, name, args...)
	for _, fd := range files {
		attr.Files = append(attr.Files, uintptr(fd))
	}
	p, err := r.Start(path, argv, attr)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// readAll reads fd (a pipe's read end) to EOF and closes it.
func readAll(t *testing.T, fd int) string {
	t.Helper()
	f := os.NewFile(uintptr(fd), "pipe")
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitExited blocks until our child pid has exited, without reaping it.
// It returns early if someone else (a Reaper) already reaped it.
func waitExited(t *testing.T, pid int) {
	t.Helper()
	var info unix.Siginfo
	err := ignoringEINTR(func() error {
		return unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
	})
	if err != nil && !errors.Is(err, unix.ECHILD) {
		t.Fatal(err)
	}
}

// procState returns pid's state letter from /proc, or 0 if it is gone.
func procState(pid int) byte {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	state, _, _ := parseStat(b)
	return state
}

// TestSubreaperOrphan: in subreaper mode a grandchild whose parent exited is
// re-parented to us, reaped, and handed to the orphan func with its status;
// our own child goes to its Process, not to the orphan func.
func TestSubreaperOrphan(t *testing.T) {
	checkFds(t)
	orphans := make(chan Status, 16)
	r := newReaper(t, WithSubreaper(), WithLogger(zaptest.NewLogger(t)),
		WithOrphanFunc(func(s Status) { orphans <- s }))
	ctx := testContext(t)

	inR, inW := pipe(t)
	outR, outW := pipe(t)
	null := devNull(t)
	p := startHelper(t, r, []int{inR, outW, null}, "orphan", "5")
	closeFd(t, inR)
	closeFd(t, outW)
	closeFd(t, null)

	gpid, err := strconv.Atoi(strings.TrimSpace(readAll(t, outR)))
	if err != nil {
		closeFd(t, inW)
		t.Fatalf("grandchild pid: %v", err)
	}
	if st := wait(t, p); !st.Success() {
		t.Errorf("child: %v", st)
	}
	// The grandchild now blocks on the pipe with no parent but us.
	closeFd(t, inW)
	select {
	case s := <-orphans:
		if s.Pid != gpid || s.Code != 5 {
			t.Errorf("orphan: pid %d %v, want pid %d exit status 5", s.Pid, s, gpid)
		}
		if s.Rusage.Maxrss <= 0 {
			t.Errorf("orphan: no rusage: %+v", s.Rusage)
		}
	case <-ctx.Done():
		t.Fatalf("grandchild %d never reached the orphan func", gpid)
	}
	r.Close()
	close(orphans)
	for s := range orphans {
		t.Errorf("unexpected orphan: pid %d %v (child was %d)", s.Pid, s, p.Pid())
	}
	if z := zombies(t); z != 0 {
		t.Errorf("%d zombies left", z)
	}
}

func TestSignal(t *testing.T) {
	checkFds(t)
	r := newReaper(t, WithLogger(zaptest.NewLogger(t)))

	t.Run("term", func(t *testing.T) {
		inR, inW := pipe(t)
		defer closeFd(t, inW)
		p := startHelper(t, r, []int{inR}, "block", "0")
		closeFd(t, inR)
		if err := p.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		st := wait(t, p)
		if st.Signal != syscall.SIGTERM || st.Code != -1 || st.Exited() || st.Success() {
			t.Errorf("got %+v, want killed by SIGTERM", st)
		}
		if got, want := st.String(), "signal: terminated"; got != want {
			t.Errorf("String() = %q, want %q", got, want)
		}
		if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
			t.Errorf("Signal after reap: %v, want os.ErrProcessDone", err)
		}
	})

	t.Run("after reap", func(t *testing.T) {
		p, err := r.Start("/bin/true", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		<-p.Done()
		for _, sig := range []syscall.Signal{0, syscall.SIGKILL} {
			if err := p.Signal(sig); !errors.Is(err, os.ErrProcessDone) {
				t.Errorf("Signal(%v) after reap: %v, want os.ErrProcessDone", sig, err)
			}
		}
	})

	t.Run("abort", func(t *testing.T) {
		null := devNull(t)
		p := startHelper(t, r, []int{null, null, null}, "abort")
		closeFd(t, null)
		st := wait(t, p)
		if st.Signal != syscall.SIGABRT {
			t.Fatalf("got %v, want killed by SIGABRT", st)
		}
		// The helper set RLIMIT_CORE to 0; only a piped core_pattern ignores that.
		if !strings.HasPrefix(corePattern(t), "|") && st.CoreDump {
			t.Errorf("got %v with RLIMIT_CORE=0", st)
		}
	})

	t.Run("core dump", func(t *testing.T) {
		if pat := corePattern(t); strings.HasPrefix(pat, "|") || strings.Contains(pat, "/") {
			t.Skipf("core_pattern %q does not write to the working directory", pat)
		}
		dir := t.TempDir()
		p, err := r.Start("/bin/sh", []string{"sh", "-c", "ulimit -c unlimited && kill -ABRT $$"},
			&syscall.ProcAttr{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		st := wait(t, p)
		if st.Exited() {
			t.Skipf("cannot raise RLIMIT_CORE: %v", st)
		}
		if st.Signal != syscall.SIGABRT {
			t.Fatalf("got %v, want killed by SIGABRT", st)
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		dumped := len(ents) > 0
		if st.CoreDump != dumped {
			t.Errorf("CoreDump = %v, but core file written = %v", st.CoreDump, dumped)
		}
		if dumped && st.String() != "signal: aborted (core dumped)" {
			t.Errorf("String() = %q", st.String())
		}
		t.Logf("%v", st)
	})
}

func corePattern(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/kernel/core_pattern")
	if err != nil {
		t.Skip(err)
	}
	return strings.TrimSpace(string(b))
}

// TestStatusString: our Status describes real exits exactly as os/exec's
// ProcessState does.
func TestStatusString(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	for _, script := range []string{"exit 0", "exit 3", "kill -KILL $$", "kill -TERM $$"} {
		p, err := r.Start("/bin/sh", []string{"sh", "-c", script}, nil)
		if err != nil {
			t.Fatal(err)
		}
		st := wait(t, p)
		cmd := exec.Command("/bin/sh", "-c", script)
		cmd.Run()
		want := cmd.ProcessState
		if st.String() != want.String() || st.Exited() != want.Exited() ||
			st.Success() != want.Success() || st.Code != want.ExitCode() {
			t.Errorf("%s: got %q exited=%v success=%v code=%d, os/exec says %q exited=%v success=%v code=%d",
				script, st, st.Exited(), st.Success(), st.Code, want, want.Exited(), want.Success(), want.ExitCode())
		}
	}
}

func TestAdopt(t *testing.T) {
	checkFds(t)
	r := newReaper(t, WithLogger(zaptest.NewLogger(t)))

	t.Run("running", func(t *testing.T) {
		inR, inW := pipe(t)
		path, argv, attr := helperArgv(t, "block", "4")
		attr.Files = []uintptr{uintptr(inR)}
		pid, _, err := syscall.StartProcess(path, argv, attr)
		closeFd(t, inR)
		if err != nil {
			closeFd(t, inW)
			t.Fatal(err)
		}
		p, err := r.Adopt(pid)
		if err != nil {
			closeFd(t, inW)
			t.Fatal(err)
		}
		if _, err := r.Adopt(pid); err == nil || !strings.Contains(err.Error(), "already watched") {
			t.Errorf("second Adopt: %v, want already watched", err)
		}
		closeFd(t, inW)
		st := wait(t, p)
		if st.Pid != pid || st.Code != 4 {
			t.Errorf("got pid %d %v, want pid %d exit status 4", st.Pid, st, pid)
		}
	})

	t.Run("zombie", func(t *testing.T) {
		pid, _, err := syscall.StartProcess("/bin/sh", []string{"sh", "-c", "exit 6"}, &syscall.ProcAttr{})
		if err != nil {
			t.Fatal(err)
		}
		waitExited(t, pid)
		if s := procState(pid); s != 'Z' {
			t.Fatalf("pid %d in state %q, want a zombie", pid, s)
		}
		p, err := r.Adopt(pid)
		if err != nil {
			t.Fatal(err)
		}
		st := wait(t, p)
		if st.Pid != pid || st.Code != 6 || st.Rusage.Maxrss <= 0 {
			t.Errorf("got pid %d %v rusage %+v, want pid %d exit status 6", st.Pid, st, st.Rusage, pid)
		}
		if z := zombies(t); z != 0 {
			t.Errorf("%d zombies left", z)
		}
	})

	t.Run("bad pid", func(t *testing.T) {
		for _, c := range []struct {
			pid  int
			want string
			is   error
		}{
			{0, "invalid pid 0", nil},
			{-1, "invalid pid -1", nil},
			{os.Getpid(), "not a child", syscall.ECHILD},
			{os.Getppid(), "not a child", syscall.ECHILD},
			{1<<22 + 1, "pidfd_open", syscall.ESRCH},
		} {
			p, err := r.Adopt(c.pid)
			if err == nil {
				t.Errorf("Adopt(%d) = pid %d, want an error", c.pid, p.Pid())
				continue
			}
			if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), strconv.Itoa(c.pid)) ||
				(c.is != nil && !errors.Is(err, c.is)) {
				t.Errorf("Adopt(%d): %v, want %q naming the pid (is %v)", c.pid, err, c.want, c.is)
			}
		}
	})
}

// TestClose: Close joins every goroutine; exits that happened before Close are
// delivered; a child still running is neither killed nor reaped, and its Wait
// and Signal report ErrClosed.
func TestClose(t *testing.T) {
	for _, mode := range []struct {
		name string
		opts []Option
	}{
		{"default", nil},
		{"subreaper", []Option{WithSubreaper()}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			checkFds(t)
			r, err := New(mode.opts...)
			if err != nil {
				t.Fatal(err)
			}
			inR, inW := pipe(t)
			null := devNull(t)
			running, err := r.Start("/bin/cat", nil, &syscall.ProcAttr{Files: []uintptr{uintptr(inR), uintptr(null)}})
			closeFd(t, inR)
			closeFd(t, null)
			if err != nil {
				closeFd(t, inW)
				t.Fatal(err)
			}
			exited, err := r.Start("/bin/true", nil, nil)
			if err != nil {
				closeFd(t, inW)
				t.Fatal(err)
			}
			waitExited(t, exited.Pid())

			r.Close()
			r.Close()
			goleak.VerifyNone(t)

			if st, ok := exited.Status(); !ok || !st.Success() {
				t.Errorf("exited before Close: Status() = %v, %v", st, ok)
			}
			select {
			case <-running.Done():
				t.Error("Done closed for a child still running")
			default:
			}
			if _, err := running.Wait(testContext(t)); !errors.Is(err, ErrClosed) {
				t.Errorf("Wait after Close: %v, want ErrClosed", err)
			}
			if err := running.Signal(syscall.SIGKILL); !errors.Is(err, ErrClosed) {
				t.Errorf("Signal after Close: %v, want ErrClosed", err)
			}
			if _, err := r.Start("/bin/true", nil, nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Start after Close: %v, want ErrClosed", err)
			}
			if _, err := r.Adopt(running.Pid()); !errors.Is(err, ErrClosed) {
				t.Errorf("Adopt after Close: %v, want ErrClosed", err)
			}

			// Left alone: still running, and still ours to reap.
			if s := procState(running.Pid()); s == 0 || s == 'Z' {
				t.Errorf("child %d in state %q after Close, want running", running.Pid(), s)
			}
			closeFd(t, inW)
			var ws syscall.WaitStatus
			err = ignoringEINTR(func() error {
				_, err := syscall.Wait4(running.Pid(), &ws, 0, nil)
				return err
			})
			if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
				t.Errorf("reaping the left child ourselves: %v %v", ws, err)
			}
		})
	}
}

// TestStartErrors: bad input fails with an error naming it, and leaks nothing.
func TestStartErrors(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	missing := filepath.Join(t.TempDir(), "missing")
	if _, err := r.Start(missing, nil, nil); err == nil || !strings.Contains(err.Error(), missing) ||
		!errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Start(%q): %v, want not exist naming the path", missing, err)
	}
	if _, err := r.Start("", nil, nil); err == nil || !strings.Contains(err.Error(), "empty path") {
		t.Errorf("Start(\"\"): %v, want empty path", err)
	}
	pidfd := -1
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{PidFD: &pidfd}}
	if _, err := r.Start("/bin/true", nil, attr); err == nil || !strings.Contains(err.Error(), "PidFD") {
		t.Errorf("Start with PidFD set: %v, want an error naming PidFD", err)
	}
}

// TestStartAttr: a nil attr works; the caller's attr is not modified; the
// status carries rusage and the collection time.
func TestStartAttr(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	before := time.Now()
	p, err := r.Start("/bin/true", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	st := wait(t, p)
	if !st.Success() || st.Pid != p.Pid() || st.Rusage.Maxrss <= 0 || st.Time.Before(before) || st.Time.After(time.Now()) {
		t.Errorf("nil attr: got %+v", st)
	}

	sys := &syscall.SysProcAttr{Setpgid: true}
	attr := &syscall.ProcAttr{Sys: sys}
	p, err = r.Start("/bin/true", []string{"true"}, attr)
	if err != nil {
		t.Fatal(err)
	}
	if attr.Sys != sys || sys.PidFD != nil || !sys.Setpgid {
		t.Errorf("caller's attr was modified: %+v %+v", attr, sys)
	}
	if st := wait(t, p); !st.Success() {
		t.Errorf("got %v", st)
	}
}

// TestNoPidfdLeak: a child sees only the files it was given, none of the
// pidfds the Reaper holds for its siblings.
func TestNoPidfdLeak(t *testing.T) {
	checkFds(t)
	r := newReaper(t)
	inR, inW := pipe(t)
	null := devNull(t)
	sibling, err := r.Start("/bin/cat", nil, &syscall.ProcAttr{Files: []uintptr{uintptr(inR), uintptr(null)}})
	closeFd(t, inR)
	if err != nil {
		closeFd(t, inW)
		t.Fatal(err)
	}
	outR, outW := pipe(t)
	p, err := r.Start("/bin/ls", []string{"ls", "-l", "/proc/self/fd/"},
		&syscall.ProcAttr{Files: []uintptr{uintptr(null), uintptr(outW), uintptr(null)}})
	closeFd(t, outW)
	closeFd(t, null)
	if err != nil {
		closeFd(t, inW)
		t.Fatal(err)
	}
	out := readAll(t, outR)
	if st := wait(t, p); !st.Success() {
		t.Errorf("ls: %v", st)
	}
	if strings.Contains(out, "pidfd") {
		t.Errorf("child inherited a pidfd:\n%s", out)
	}
	closeFd(t, inW)
	if st := wait(t, sibling); !st.Success() {
		t.Errorf("sibling: %v", st)
	}
}

func TestNewErrors(t *testing.T) {
	if _, err := New(nil); err == nil || !strings.Contains(err.Error(), "nil") {
		t.Errorf("New(nil): %v, want an error", err)
	}
	if _, err := New(WithOrphanFunc(func(Status) {})); err == nil || !strings.Contains(err.Error(), "WithSubreaper") {
		t.Errorf("WithOrphanFunc alone: %v, want an error naming WithSubreaper", err)
	}
	var zero Reaper
	if _, err := zero.Start("/bin/true", nil, nil); err == nil {
		t.Error("Start on a zero Reaper succeeded")
	}
	if _, err := zero.Adopt(1); err == nil {
		t.Error("Adopt on a zero Reaper succeeded")
	}
	if err := zero.Close(); err != nil {
		t.Errorf("Close on a zero Reaper: %v", err)
	}
}

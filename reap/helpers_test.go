//go:build linux

package reap

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// helperEnv names the helper a re-executed test binary runs instead of tests.
const helperEnv = "HANDOFF_TEST_HELPER"

// helpers run in a re-executed test binary; each returns its exit code.
var helpers = map[string]func(args []string) int{
	// exit CODE: exit at once.
	"exit": func(args []string) int { return atoi(args[0]) },
	// block CODE: read stdin to EOF, then exit.
	"block": func(args []string) int {
		io.Copy(io.Discard, os.Stdin)
		return atoi(args[0])
	},
	// orphan CODE: start a grandchild "block CODE" on our stdin, print its
	// pid, exit without waiting for it.
	"orphan": func(args []string) int {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 100
		}
		cmd := exec.Command(exe, args[0])
		cmd.Env = append(os.Environ(), helperEnv+"=block")
		cmd.Stdin = os.Stdin
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 101
		}
		fmt.Println(cmd.Process.Pid)
		return 0
	},
	// abort: die by SIGABRT, with core dumps disabled.
	"abort": func([]string) int {
		if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
			return 102
		}
		debug.SetTraceback("crash")
		panic("abort helper")
	},
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 99
	}
	return n
}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
			os.Exit(98)
		}
		os.Exit(h(os.Args[1:]))
	}
	// Start the netpoller now, so its descriptors do not count as a leak in
	// the first test that checks /proc/self/fd.
	r, w, err := os.Pipe()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	r.Close()
	w.Close()
	goleak.VerifyTestMain(m)
}

// helperArgv returns the path, argv and attributes that run helper name with
// args in the test binary; the caller sets attr.Files.
func helperArgv(t testing.TB, name string, args ...string) (string, []string, *syscall.ProcAttr) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// The race runtime sleeps a second at a clean exit unless told not to.
	// The first GORACE in the environment wins, so replace it.
	env := []string{helperEnv + "=" + name, "GORACE=" + strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0")}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GORACE=") && !strings.HasPrefix(kv, helperEnv+"=") {
			env = append(env, kv)
		}
	}
	return exe, append([]string{exe}, args...), &syscall.ProcAttr{Env: env}
}

// testContext ends a little before the test's deadline, so that a hang fails
// with a message rather than a panic. Benchmarks have no deadline.
func testContext(t testing.TB) context.Context {
	t.Helper()
	ctx := t.Context()
	tt, ok := t.(*testing.T)
	if !ok {
		return ctx
	}
	dl, ok := tt.Deadline()
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithDeadline(ctx, dl.Add(-time.Until(dl)/10))
	t.Cleanup(cancel)
	return ctx
}

// pipe returns a close-on-exec pipe as raw fds.
func pipe(t testing.TB) (rfd, wfd int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	return p[0], p[1]
}

func devNull(t testing.TB) int {
	t.Helper()
	fd, err := unix.Open(os.DevNull, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func closeFd(t testing.TB, fd int) {
	t.Helper()
	if err := unix.Close(fd); err != nil {
		t.Fatal(err)
	}
}

// fdCount counts this process's open descriptors.
func fdCount(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory being read
}

// checkFds fails the test if it ends with more or fewer descriptors than it
// started with.
func checkFds(t *testing.T) {
	t.Helper()
	before := fdCount(t)
	t.Cleanup(func() {
		if after := fdCount(t); after != before {
			t.Errorf("open descriptors: %d before, %d after", before, after)
		}
	})
}

// zombies counts this process's children in state Z.
func zombies(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	me := os.Getpid()
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		state, ppid, ok := parseStat(b)
		if ok && ppid == me && state == 'Z' {
			n++
		}
	}
	return n
}

// parseStat returns state and ppid from a /proc/PID/stat line; the command
// name in parentheses may itself hold spaces and parentheses.
func parseStat(b []byte) (state byte, ppid int, ok bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 || len(f[0]) != 1 {
		return 0, 0, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// threads reads this process's thread count.
func threads(t testing.TB) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no Threads line in /proc/self/status")
	return 0
}

func newReaper(t testing.TB, opts ...Option) *Reaper {
	t.Helper()
	r, err := New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func wait(t testing.TB, p *Process) Status {
	t.Helper()
	st, err := p.Wait(testContext(t))
	if err != nil {
		t.Fatalf("wait pid %d: %v", p.Pid(), err)
	}
	return st
}

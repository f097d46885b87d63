package handover

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// received is what the "receive" helper says about the state it got.
type received struct {
	Table      int // bytes
	Sum        byte
	Signals    []syscall.Signal
	Cloexec    bool // the state's descriptor, at the start
	Closed     bool // and after Receive
	EnvCleared bool
	Err        string
}

func init() {
	// exec execs the test binary as "receive", handing it a state of
	// TEST_TABLE bytes and the SIGHUP it caught just before.
	helpers["exec"] = func() int {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		n, _ := strconv.Atoi(os.Getenv("TEST_TABLE"))
		sigs := make(chan os.Signal, 16)
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		var env []string
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, helperEnv+"=") {
				env = append(env, kv)
			}
		}
		env = append(env, helperEnv+"=receive")
		_, err = Exec(&Handoff{Path: exe, Args: []string{exe}, Env: env,
			State: State{Table: bytes.Repeat([]byte{7}, n), Signals: []syscall.Signal{syscall.SIGUSR2}}, Sigs: sigs})
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	helpers["receive"] = func() int {
		var r received
		fd, _ := strconv.Atoi(os.Getenv(EnvState))
		flags, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		r.Cloexec = err == nil && flags&unix.FD_CLOEXEC != 0
		st, err := Receive()
		if err != nil {
			r.Err = err.Error()
		} else {
			r.Table, r.Signals = len(st.Table), st.Signals
			for _, b := range st.Table {
				r.Sum += b
			}
		}
		_, err = unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		r.Closed = errors.Is(err, unix.EBADF)
		_, set := os.LookupEnv(EnvState)
		r.EnvCleared = !set
		json.NewEncoder(os.Stdout).Encode(r)
		return 0
	}
}

// TestExecHandsOver: a program exec'd with a state of 1 MiB (eight times
// what one environment variable can hold) receives it whole, with the
// signals handed over and the one caught in the window; its descriptor is
// close-on-exec from the start and closed once read, and the variable
// gone.
func TestExecHandsOver(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const n = 1 << 20
	ctx, cancel := context.WithDeadline(context.Background(), deadline(t))
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), helperEnv+"=exec", "TEST_TABLE="+strconv.Itoa(n))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the exec'd program: %v", err)
	}
	var r received
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("%q: %v", out, err)
	}
	want := received{Table: n, Sum: byte(7 * n % 256), Signals: []syscall.Signal{syscall.SIGUSR2, syscall.SIGHUP},
		Cloexec: true, Closed: true, EnvCleared: true}
	if fmt.Sprint(r) != fmt.Sprint(want) {
		t.Fatalf("received %+v, want %+v", r, want)
	}
}

// TestReceiveRefuses: a state this program cannot read is an error; a
// descriptor that is no sealed memfd is not closed.
func TestReceiveRefuses(t *testing.T) {
	sealed := func(b []byte) int {
		fd, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
		if err != nil {
			t.Fatal(err)
		}
		if err := write(fd, b); err != nil {
			t.Fatal(err)
		}
		return fd
	}
	other := Encode(State{Table: []byte("{}")})
	other[len(magic)+3]++
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	unsealed, err := unix.MemfdCreate("test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unsealed)
	for _, tc := range []struct {
		name, env, want string
		fd              int // closed by Receive
	}{
		{name: "no number", env: "x3", want: "want a descriptor number"},
		{name: "stdin", env: "0", want: "want a descriptor number"},
		{name: "a pipe", env: strconv.Itoa(int(r.Fd())), want: "no sealed memfd"},
		{name: "unsealed", env: strconv.Itoa(unsealed), want: "no sealed memfd"},
		{name: "garbage", fd: sealed([]byte("garbage")), want: "no magic"},
		{name: "another version", fd: sealed(other), want: "version 2, this program reads 1"},
		{name: "truncated", fd: sealed(Encode(State{Table: []byte("{}")})[:20]), want: "truncated"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := tc.env
			if tc.fd != 0 {
				env = strconv.Itoa(tc.fd)
			}
			t.Setenv(EnvState, env)
			st, err := Receive()
			if st != nil || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Receive: %v, %v; want an error saying %q", st, err, tc.want)
			}
			if _, ok := os.LookupEnv(EnvState); ok {
				t.Errorf("%s still set", EnvState)
			}
			if tc.fd != 0 {
				if _, err := unix.FcntlInt(uintptr(tc.fd), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
					t.Errorf("the state's descriptor is still open")
				}
			}
		})
	}
	if _, err := unix.FcntlInt(r.Fd(), unix.F_GETFD, 0); err != nil {
		t.Errorf("Receive closed a pipe it was pointed at: %v", err)
	}
}

// TestSigactionLayout: setRaw's struct is the kernel's on this
// architecture: the kernel sees the SIG_IGN it sets (/proc/self/status),
// and the handler it puts back is the runtime's, exactly.
func TestSigactionLayout(t *testing.T) {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGUSR1)
	defer signal.Stop(c)
	var before sigaction
	if err := rtSigaction(syscall.SIGUSR1, nil, &before); err != nil {
		t.Fatal(err)
	}
	if before.handler == sigDfl || before.handler == sigIgn {
		t.Fatalf("SIGUSR1 notified, but its handler reads %#x", before.handler)
	}
	restore, err := setRaw([]syscall.Signal{syscall.SIGUSR1}, sigIgn)
	if err != nil {
		t.Fatal(err)
	}
	ignored := sigStatus(t, "SigIgn")&(1<<(syscall.SIGUSR1-1)) != 0
	restore()
	if !ignored {
		t.Fatal("setRaw(SIG_IGN): the kernel does not see SIGUSR1 ignored")
	}
	var after sigaction
	if err := rtSigaction(syscall.SIGUSR1, nil, &after); err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Fatalf("after restore: %+v, want the runtime's %+v", after, before)
	}
	if sigStatus(t, "SigCgt")&(1<<(syscall.SIGUSR1-1)) == 0 {
		t.Fatal("after restore the kernel does not see SIGUSR1 caught")
	}
	// settle relies on it: the runtime's handler runs with every signal
	// blocked, sigMarker included.
	if !maskHas(before.mask, sigMarker) {
		t.Fatalf("the runtime's handler does not block %v: %+v", sigMarker, before)
	}
}

// deadline is the test's deadline, a little early.
func deadline(t *testing.T) time.Time {
	d, ok := t.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d.Add(-5 * time.Second)
}

func maskHas(m sigset, sig syscall.Signal) bool {
	const bits = 8 * unsafe.Sizeof(uintptr(0))
	i := uintptr(sig - 1)
	return m[i/bits]&(1<<(i%bits)) != 0
}

// sigStatus is the signal set field of /proc/self/status.
func sigStatus(t *testing.T, field string) uint64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), field+":"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", field)
	return 0
}

// TestSettle: a signal the runtime caught before settle is on its
// channel when settle returns, however the threads are scheduled. The
// signal is sent by a thread that blocks it, so that another thread's
// handler takes it while settle runs.
func TestSettle(t *testing.T) {
	sigs := []syscall.Signal{syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR2, syscall.SIGTERM}
	c := make(chan os.Signal, 16)
	signal.Notify(c, syscall.SIGHUP, syscall.SIGINT, syscall.SIGUSR2, syscall.SIGTERM)
	defer signal.Stop(c)
	const tries = 300
	failed := make(chan string, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var set unix.Sigset_t
		for _, s := range sigs {
			set.Val[(s-1)/64] |= 1 << ((s - 1) % 64)
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, nil); err != nil {
			failed <- err.Error()
			return
		}
		for i := range tries {
			sig := sigs[i%len(sigs)]
			syscall.Kill(os.Getpid(), sig)
			settle()
			select {
			case got := <-c:
				if got != sig {
					failed <- fmt.Sprintf("try %d: %v on the channel, want %v", i, got, sig)
					return
				}
			default:
				failed <- fmt.Sprintf("try %d: %v, caught before settle, is not on its channel after it", i, sig)
				return
			}
		}
		failed <- ""
	}()
	if msg := <-failed; msg != "" {
		t.Fatal(msg)
	}
}

// TestReceiveLegacy: a program of before Version 1 left its state as JSON
// in the variable itself, and its last signals in another: Receive takes
// both, so that an upgrade from such a program keeps its workers.
func TestReceiveLegacy(t *testing.T) {
	t.Setenv(EnvState, `{"Generation":3,"Signals":[1,99]}`)
	t.Setenv(envLegacySignals, "12,x,10")
	st, err := Receive()
	if err != nil {
		t.Fatal(err)
	}
	if string(st.Table) != `{"Generation":3,"Signals":[1,99]}` || !slices.Equal(st.Signals, []syscall.Signal{1, 12, 10}) {
		t.Errorf("Receive: table %q, signals %v; want the JSON and [1 12 10]", st.Table, st.Signals)
	}
	for _, name := range []string{EnvState, envLegacySignals} {
		if v, ok := os.LookupEnv(name); ok {
			t.Errorf("%s=%q left in the environment", name, v)
		}
	}
}

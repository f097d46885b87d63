package listener

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestHandoff passes a TCP and a unix socket to a real worker, the test binary re-executed, and
// talks to it through both. "self" starts the running binary (the trampoline's no-exec case),
// "copy" a copy of it (through /proc/self/exe, then exec).
func TestHandoff(t *testing.T) {
	exe := testExe(t)
	for _, tc := range []struct{ name, path string }{
		{"self", exe},
		{"copy", copyExe(t, t.TempDir())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFdLeak(t)
			web := mustListen(t, "web=tcp://127.0.0.1:0")
			path := filepath.Join(t.TempDir(), "admin.sock")
			admin := mustListen(t, "admin=unix://"+path)

			c := startHelper(t, "serve", tc.path, []*Socket{web, admin})
			r := c.report(t)
			if r.Err != "" {
				t.Fatalf("Inherit in the worker: %s", r.Err)
			}
			if r.Pid != c.pid || r.ListenPid != strconv.Itoa(c.pid) {
				t.Errorf("worker pid %d (started as %d) saw LISTEN_PID=%q", r.Pid, c.pid, r.ListenPid)
			}
			if r.Exe != tc.path {
				t.Errorf("worker ran %s, want %s", r.Exe, tc.path)
			}
			if !slices.Equal(r.Names, []string{"web", "admin"}) {
				t.Errorf("worker's listeners are named %q, want [web admin]", r.Names)
			}
			if !slices.Equal(r.Addrs, []string{web.Addr().String(), path}) {
				t.Errorf("worker's listeners are on %q, want [%s %s]", r.Addrs, web.Addr(), path)
			}
			if !allTrue(r.Cloexec) || !allTrue(r.Nonblock) {
				t.Errorf("worker's listeners: cloexec %v nonblock %v, want all true", r.Cloexec, r.Nonblock)
			}
			if len(r.EnvLeft) != 0 {
				t.Errorf("worker's environment after Inherit still has %q", r.EnvLeft)
			}
			checkChildFds(t, r, []string{socketLink(t, web), socketLink(t, admin)})

			if got := dialRead(t, "tcp", web.Addr().String()); got != "web" {
				t.Errorf("web answered %q", got)
			}
			if got := dialRead(t, "unix", path); got != "admin" {
				t.Errorf("admin answered %q", got)
			}
			c.mustExit0(t)
			if cloexec, nonblock := flagsOf(t, web); !cloexec || !nonblock {
				t.Errorf("supervisor's socket after the worker: cloexec=%v nonblock=%v", cloexec, nonblock)
			}
			admin.Close()
			if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
				t.Errorf("unix socket file after worker and supervisor closed it: %v, %v", fi, err)
			}
		})
	}
}

// TestNonblocking checks that the shared socket stays non-blocking in the supervisor and in
// running workers while more workers start, and that the check can tell.
func TestNonblocking(t *testing.T) {
	checkFdLeak(t)
	exe := testExe(t)
	s := mustListen(t, "web=tcp://127.0.0.1:0")
	var children []*child
	for i := range 4 {
		c := startHelper(t, "nonblock", exe, []*Socket{s})
		r := c.report(t)
		if r.Err != "" || !allTrue(r.Nonblock) {
			t.Fatalf("worker %d after Inherit: nonblock %v, err %q", i, r.Nonblock, r.Err)
		}
		children = append(children, c)
		if _, nonblock := flagsOf(t, s); !nonblock {
			t.Fatalf("supervisor's socket is blocking after starting worker %d", i)
		}
	}
	for i, c := range children {
		if _, err := c.stdin.Write([]byte{'?'}); err != nil {
			t.Fatal(err)
		}
		if r := c.report(t); r.Err != "" || !allTrue(r.Nonblock) {
			t.Errorf("worker %d, after all started: nonblock %v, err %q", i, r.Nonblock, r.Err)
		}
	}
	for _, c := range children {
		c.stdin.Close()
		c.mustExit0(t)
	}
	if _, nonblock := flagsOf(t, s); !nonblock {
		t.Error("supervisor's socket is blocking after the workers exited")
	}

	// The check is not vacuous: File().Fd() on a listener sharing the description (what
	// os.StartProcess does with ExtraFiles) turns it blocking, and flagsOf sees that.
	ln := inProcessListener(t, s)
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	f.Fd()
	f.Close()
	if _, nonblock := flagsOf(t, s); nonblock {
		t.Error("File().Fd() on a shared listener did not turn the socket blocking; the check above proves nothing")
	}
}

// TestTrampolineRewrite checks Trampoline's rewriting of path and environment.
func TestTrampolineRewrite(t *testing.T) {
	exe := testExe(t)
	argv := []string{"worker", "-flag"}
	env := []string{"A=1", "LISTEN_PID=5", "LISTEN_FDS=9", "HANDOFF_TRAMPOLINE=x", "LISTEN_FDNAMES=old", "LISTEN_FDS=1", "LISTEN_FDNAMES=web", "B=2"}
	orig := slices.Clone(env)

	path, targv, tenv := Trampoline("/bin/sh", argv, env)
	want := []string{"A=1", "LISTEN_FDS=1", "LISTEN_FDNAMES=web", "B=2", "HANDOFF_TRAMPOLINE=/bin/sh"}
	if path != "/proc/self/exe" || !slices.Equal(targv, argv) || !slices.Equal(tenv, want) {
		t.Errorf("Trampoline(/bin/sh) = %q %q %q; want /proc/self/exe %q %q", path, targv, tenv, argv, want)
	}
	if !slices.Equal(env, orig) {
		t.Errorf("Trampoline changed its env argument to %q", env)
	}

	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(exe, link); err != nil {
		t.Fatal(err)
	}
	copied := copyExe(t, t.TempDir())
	for _, tc := range []struct{ in, path, target string }{
		{exe, exe, ""},                     // the running binary: no second exec
		{link, link, ""},                   // the same file by another name
		{copied, "/proc/self/exe", copied}, // same contents, another file
		{"sh", "/proc/self/exe", "sh"},     // relative: never taken for the running binary
		{"/nonexistent", "/proc/self/exe", "/nonexistent"},
	} {
		for _, env := range [][]string{{"A=1", "LISTEN_FDS=1"}, {"A=1", "WATCHDOG_USEC=1000"}} {
			path, _, tenv := Trampoline(tc.in, argv, env)
			if path != tc.path || tenv[len(tenv)-1] != "HANDOFF_TRAMPOLINE="+tc.target {
				t.Errorf("Trampoline(%s, %q) = %s with %q; want %s with HANDOFF_TRAMPOLINE=%s", tc.in, env, path, tenv, tc.path, tc.target)
			}
		}
		// Nothing to set: no trampoline.
		path, _, tenv := Trampoline(tc.in, argv, []string{"A=1", "LISTEN_PID=3", "WATCHDOG_PID=4"})
		if path != tc.in || !slices.Equal(tenv, []string{"A=1"}) {
			t.Errorf("Trampoline(%s) without sockets or watchdog = %s with %q; want %s with [A=1]", tc.in, path, tenv, tc.in)
		}
	}
}

// TestTrampolineForeign runs a non-Go worker through the trampoline: the pid the shell reports
// for itself is the pid it finds in LISTEN_PID, and the trampoline's variable is gone.
func TestTrampolineForeign(t *testing.T) {
	checkFdLeak(t)
	s := mustListen(t, "web=tcp://127.0.0.1:0")
	script := `echo "$LISTEN_PID $$ $LISTEN_FDS $LISTEN_FDNAMES ${HANDOFF_TRAMPOLINE+set}"`
	path, argv, env := Trampoline("/bin/sh", []string{"sh", "-c", script}, append(os.Environ(), Env([]*Socket{s})...))
	if path != "/proc/self/exe" {
		t.Fatalf("Trampoline(/bin/sh) = %s", path)
	}
	var c *child
	s.Control(func(fd uintptr) { c = start(t, path, argv, env, []uintptr{fd}, nil) })
	got := c.line(t)
	c.mustExit0(t)
	if want := fmt.Sprintf("%d %d 1 web ", c.pid, c.pid); got != want {
		t.Errorf("the shell printed %q, want %q (LISTEN_PID, its pid, LISTEN_FDS, LISTEN_FDNAMES, no HANDOFF_TRAMPOLINE)", got, want)
	}
}

// TestTrampolineReplacedBinary checks that the trampoline still works after the supervisor's
// binary was replaced on disk: /proc/self/exe is the running image, not the new file.
func TestTrampolineReplacedBinary(t *testing.T) {
	checkFdLeak(t)
	exe := copyExe(t, t.TempDir())
	c := start(t, exe, []string{exe}, helperEnviron("replaced"), nil, nil)
	got := c.line(t)
	c.mustExit0(t)
	f := strings.Fields(got)
	if len(f) != 2 || f[0] != f[1] || f[0] == strconv.Itoa(c.pid) {
		t.Errorf("the shell printed %q, want its own pid twice and no HANDOFF_TRAMPOLINE", got)
	}
}

func TestTrampolineMissingTarget(t *testing.T) {
	checkFdLeak(t)
	const target = "/nonexistent/handoff-worker"
	path, argv, env := Trampoline(target, []string{"worker"}, append(os.Environ(), "LISTEN_FDS=1"))
	c := start(t, path, argv, env, nil, nil)
	if st := c.wait(t); st.ExitCode() != 127 {
		t.Errorf("trampoline to a missing program: %v, want exit status 127", st)
	}
	if want := "handoff: exec " + target + ": no such file or directory\n"; c.stderr() != want {
		t.Errorf("stderr %q, want %q", c.stderr(), want)
	}
}

// TestAdopt gives a re-executed test binary sockets as systemd would and checks what Adopt
// makes of them.
func TestAdopt(t *testing.T) {
	checkFdLeak(t)
	web := mustListen(t, "web=tcp://127.0.0.1:0")
	path := filepath.Join(t.TempDir(), "admin.sock")
	admin := mustListen(t, "admin=unix://"+path)
	c := startHelper(t, "adopt", testExe(t), []*Socket{web, admin})
	r := c.report(t)
	c.mustExit0(t)
	if r.Err != "" {
		t.Fatalf("Adopt: %s", r.Err)
	}
	if !slices.Equal(r.Names, []string{"web", "admin"}) || !slices.Equal(r.Addrs, []string{web.Addr().String(), path}) {
		t.Errorf("Adopt: names %q addrs %q; want [web admin] [%s %s]", r.Names, r.Addrs, web.Addr(), path)
	}
	if !allTrue(r.Cloexec) || !allTrue(r.Nonblock) || len(r.EnvLeft) != 0 {
		t.Errorf("Adopt: cloexec %v nonblock %v env left %q", r.Cloexec, r.Nonblock, r.EnvLeft)
	}
	checkChildFds(t, r, []string{socketLink(t, web), socketLink(t, admin)})
}

// TestTakeEnv runs Adopt and Inherit in the test process with environments that give no
// sockets or a malformed value, and checks they clear the variables either way.
func TestTakeEnv(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	other := strconv.Itoa(os.Getpid() + 1)
	for _, tc := range []struct {
		fds, names, lpid string
		is               error
		want             string
	}{
		{"", "", "", ErrNoListeners, "LISTEN_FDS not set"},
		{"1", "web", other, ErrNoListeners, "LISTEN_PID=" + other + " is another process"},
		{"1", "web", "", ErrNoListeners, "LISTEN_PID is not"},
		{"abc", "web", pid, ErrBadEnv, `LISTEN_FDS="abc"`},
		{"2", "web", pid, ErrBadEnv, "1 names for LISTEN_FDS=2"},
	} {
		for _, f := range []struct {
			name string
			call func() (int, error)
		}{
			{"Adopt", func() (int, error) { s, err := Adopt(); return len(s), err }},
			{"Inherit", func() (int, error) { l, err := Inherit(); return len(l), err }},
		} {
			for k, v := range map[string]string{envFds: tc.fds, envNames: tc.names, envPid: tc.lpid} {
				t.Setenv(k, v) // restores the original at the end
				if v == "" {
					os.Unsetenv(k)
				}
			}
			n, err := f.call()
			if n != 0 || !errors.Is(err, tc.is) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s with LISTEN_FDS=%q LISTEN_FDNAMES=%q LISTEN_PID=%q: %d, %v; want an error wrapping %q containing %q",
					f.name, tc.fds, tc.names, tc.lpid, n, err, tc.is, tc.want)
			}
			if tc.fds == "" && err != ErrNoListeners {
				t.Errorf("%s without LISTEN_FDS: %v, want ErrNoListeners itself", f.name, err)
			}
			for _, k := range []string{envFds, envNames, envPid} {
				if v, ok := os.LookupEnv(k); ok {
					t.Errorf("%s left %s=%q in the environment", f.name, k, v)
				}
			}
		}
	}
}

// TestInheritBadFds gives Inherit and Adopt, in children, descriptors that are not listening
// sockets, or fewer than LISTEN_FDS says.
func TestInheritBadFds(t *testing.T) {
	checkFdLeak(t)
	exe := testExe(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pair[0])
	defer unix.Close(pair[1])
	var pipeFd uintptr
	rc, _ := r.SyscallConn()
	rc.Control(func(fd uintptr) { pipeFd = fd })
	s := mustListen(t, "tcp://127.0.0.1:0")
	var sockFd uintptr
	s.Control(func(fd uintptr) { sockFd = fd })

	for _, tc := range []struct {
		name  string
		files []uintptr
		env   []string
		want  string
	}{
		{"pipe", []uintptr{pipeFd}, []string{"LISTEN_FDS=1", "LISTEN_FDNAMES=p"}, `fd 3 ("p"): not a socket`},
		{"socketpair", []uintptr{sockFd, uintptr(pair[0])}, []string{"LISTEN_FDS=2", "LISTEN_FDNAMES=ok:sp"}, `fd 4 ("sp"): a socket, but not listening`},
		// Whatever the child has as fd 4 (the Go runtime opens files at start), it is no socket.
		{"missing", []uintptr{sockFd}, []string{"LISTEN_FDS=2"}, "fd 4"},
	} {
		for _, helper := range []string{"inherit", "adopt"} {
			t.Run(tc.name+"/"+helper, func(t *testing.T) {
				path, argv, env := Trampoline(exe, []string{exe}, append(helperEnviron(helper), tc.env...))
				c := start(t, path, argv, env, tc.files, nil)
				r := c.report(t)
				c.mustExit0(t)
				if !strings.Contains(r.Err, tc.want) || len(r.Names) != 0 {
					t.Errorf("%s: %d sockets, error %q; want none and an error containing %q", helper, len(r.Names), r.Err, tc.want)
				}
			})
		}
	}
}

// TestSystemdSocketActivate has systemd-socket-activate, not handoff, pass the socket, to a
// worker using Inherit or Adopt.
func TestSystemdSocketActivate(t *testing.T) {
	activate, err := exec.LookPath("systemd-socket-activate")
	if err != nil {
		t.Skip(err)
	}
	exe := testExe(t)
	t.Run("unix", func(t *testing.T) {
		checkFdLeak(t)
		path := filepath.Join(t.TempDir(), "web.sock")
		c, ok := startActivate(t, activate, path, "serve", exe)
		if !ok {
			t.Fatalf("systemd-socket-activate -l %s failed; its stderr:\n%s", path, c.stderr())
		}
		checkActivated(t, c, "unix", path)
	})
	t.Run("tcp", func(t *testing.T) {
		checkFdLeak(t)
		for attempt := 0; ; attempt++ {
			// systemd-socket-activate cannot bind port 0, so pick a free port; another
			// process may take it first, hence the retries.
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := l.Addr().String()
			l.Close()
			c, ok := startActivate(t, activate, addr, "serve", exe)
			if !ok {
				if strings.Contains(c.stderr(), "in use") && attempt < 5 {
					continue
				}
				t.Fatalf("systemd-socket-activate -l %s failed; its stderr:\n%s", addr, c.stderr())
			}
			checkActivated(t, c, "tcp", addr)
			return
		}
	})
	t.Run("adopt", func(t *testing.T) {
		checkFdLeak(t)
		path := filepath.Join(t.TempDir(), "web.sock")
		c, ok := startActivate(t, activate, path, "adopt", exe)
		if !ok {
			t.Fatalf("systemd-socket-activate -l %s failed; its stderr:\n%s", path, c.stderr())
		}
		conn, err := net.Dial("unix", path) // systemd-socket-activate starts the worker on the first connection
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		r := c.report(t)
		c.mustExit0(t)
		if r.Err != "" || !slices.Equal(r.Names, []string{"web"}) || !slices.Equal(r.Addrs, []string{path}) {
			t.Errorf("Adopt: names %q addrs %q err %q; want [web] [%s]", r.Names, r.Addrs, r.Err, path)
		}
		if r.Pid != c.pid || r.ListenPid != strconv.Itoa(c.pid) {
			t.Errorf("worker pid %d (started as %d) saw LISTEN_PID=%q", r.Pid, c.pid, r.ListenPid)
		}
		// systemd-socket-activate's sockets are blocking; Adopt must have changed that.
		if !allTrue(r.Cloexec) || !allTrue(r.Nonblock) || len(r.EnvLeft) != 0 {
			t.Errorf("Adopt: cloexec %v nonblock %v env left %q", r.Cloexec, r.Nonblock, r.EnvLeft)
		}
	})
}

// startActivate starts "systemd-socket-activate -l addr --fdname=web exe" running helper, and
// waits until it listens. It reports false if it exited instead.
func startActivate(t *testing.T, activate, addr, helper, exe string) (*child, bool) {
	t.Helper()
	argv := []string{activate, "-l", addr, "--fdname=web"}
	for _, kv := range helperEnviron(helper) {
		if strings.HasPrefix(kv, helperEnv+"=") || strings.HasPrefix(kv, "GORACE=") {
			argv = append(argv, "-E", kv)
		}
	}
	argv = append(argv, exe)
	c := start(t, activate, argv, os.Environ(), nil, nil)
	// It says "Listening on <addr> as 3." on stderr, which is a file; it exits if it cannot.
	// Watch for either: the file's size changing or the process ending.
	for {
		if strings.Contains(c.stderr(), "Listening on") {
			return c, true
		}
		if exited(t, c) {
			return c, strings.Contains(c.stderr(), "Listening on")
		}
	}
}

// exited waits for c to write to its stderr or to exit, and reports whether it exited.
func exited(t *testing.T, c *child) bool {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(os.NewSyscallError("inotify_init1", err))
	}
	defer unix.Close(fd)
	if _, err := unix.InotifyAddWatch(fd, c.errPath, unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		t.Fatal(os.NewSyscallError("inotify_add_watch", err))
	}
	pidfd, err := unix.PidfdOpen(c.pid, 0)
	if err != nil {
		t.Fatal(os.NewSyscallError("pidfd_open", err))
	}
	defer unix.Close(pidfd)
	if strings.Contains(c.stderr(), "Listening on") { // written before the watch began
		return false
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(pidfd), Events: unix.POLLIN}}
	timeout := int(min(time.Until(deadline(t)).Milliseconds(), 1<<30))
	for {
		n, err := unix.Poll(fds, timeout)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			t.Fatalf("waiting for pid %d: poll: %v (n=%d)", c.pid, err, n)
		}
		break
	}
	if fds[1].Revents != 0 {
		c.wait(t)
		return true
	}
	return false
}

func checkActivated(t *testing.T, c *child, network, addr string) {
	t.Helper()
	d := net.Dialer{Deadline: deadline(t)}
	conn, err := d.Dial(network, addr) // systemd-socket-activate starts the worker on the first connection
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := c.report(t)
	if r.Err != "" {
		t.Fatalf("Inherit: %s", r.Err)
	}
	if r.Pid != c.pid || r.ListenPid != strconv.Itoa(c.pid) {
		t.Errorf("worker pid %d (systemd-socket-activate was %d) saw LISTEN_PID=%q", r.Pid, c.pid, r.ListenPid)
	}
	if !slices.Equal(r.Names, []string{"web"}) || !slices.Equal(r.Addrs, []string{addr}) {
		t.Errorf("worker's listeners: names %q addrs %q; want [web] [%s]", r.Names, r.Addrs, addr)
	}
	if !allTrue(r.Cloexec) || !allTrue(r.Nonblock) || len(r.EnvLeft) != 0 {
		t.Errorf("worker's listeners: cloexec %v nonblock %v; env left %q", r.Cloexec, r.Nonblock, r.EnvLeft)
	}
	conn.SetDeadline(deadline(t))
	buf := make([]byte, 16)
	n, _ := conn.Read(buf)
	if string(buf[:n]) != "web" {
		t.Errorf("worker answered %q, want web", buf[:n])
	}
	c.mustExit0(t)
}

// BenchmarkSpawn measures what the trampoline adds to starting a worker: /bin/true started
// directly, and through the trampoline (this test binary's start plus a second exec).
func BenchmarkSpawn(b *testing.B) {
	env := append(os.Environ(), "LISTEN_FDS=1", "LISTEN_FDNAMES=web")
	for _, bc := range []struct {
		name  string
		tramp bool
	}{{"direct", false}, {"trampoline", true}} {
		b.Run(bc.name, func(b *testing.B) {
			path, argv, env := "/bin/true", []string{"true"}, env
			if bc.tramp {
				path, argv, env = Trampoline(path, argv, env)
			}
			attr := &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}}
			for b.Loop() {
				pid, _, err := syscall.StartProcess(path, argv, attr)
				if err != nil {
					b.Fatal(err)
				}
				var ws syscall.WaitStatus
				if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil || ws.ExitStatus() != 0 {
					b.Fatalf("wait: %v, %v", ws, err)
				}
			}
		})
	}
}

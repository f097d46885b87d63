package listener

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// addrEnv gives the "listen" helper its address.
const addrEnv = "HANDOFF_TEST_ADDR"

// report is what a helper child tells the test, as one JSON line on stdout.
type report struct {
	Pid       int            `json:"pid"`
	Exe       string         `json:"exe"`        // os.Executable(): which binary runs the helper
	ListenPid string         `json:"listen_pid"` // LISTEN_PID before Inherit or Adopt
	Fds       map[int]string `json:"fds"`        // /proc/self/fd before Inherit or Adopt: fd -> link
	Err       string         `json:"err,omitempty"`
	Is        []string       `json:"is,omitempty"` // the known errors Err wraps
	Names     []string       `json:"names"`
	Addrs     []string       `json:"addrs"`
	Cloexec   []bool         `json:"cloexec"`
	Nonblock  []bool         `json:"nonblock"`
	EnvLeft   []string       `json:"env_left"` // LISTEN_* and HANDOFF_TRAMPOLINE entries afterwards
}

// runHelper runs the helper named by HANDOFF_TEST_HELPER in a re-executed test binary.
func runHelper(name string) int {
	switch name {
	case "serve":
		return helperServe()
	case "adopt":
		return helperAdopt()
	case "inherit":
		return helperInherit()
	case "nonblock":
		return helperNonblock()
	case "listen":
		return helperListen()
	case "replaced":
		return helperReplaced()
	case "exit":
		return 0
	}
	fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
	return 2
}

func newReport() report {
	exe, _ := os.Executable()
	return report{Pid: os.Getpid(), Exe: exe, ListenPid: os.Getenv(envPid), Fds: listFds()}
}

func (r *report) setErr(err error) {
	if err == nil {
		return
	}
	r.Err = err.Error()
	for _, k := range []struct {
		name string
		err  error
	}{
		{"ErrNoListeners", ErrNoListeners}, {"ErrBadEnv", ErrBadEnv}, {"ErrInUse", ErrInUse},
		{"EACCES", syscall.EACCES}, {"EADDRINUSE", syscall.EADDRINUSE}, {"EBADF", syscall.EBADF},
	} {
		if errors.Is(err, k.err) {
			r.Is = append(r.Is, k.name)
		}
	}
}

func (r *report) addFlags(fd uintptr) {
	cloexec, nonblock, err := fdFlags(fd)
	if err != nil {
		r.setErr(err)
	}
	r.Cloexec = append(r.Cloexec, cloexec)
	r.Nonblock = append(r.Nonblock, nonblock)
}

func (r *report) addListener(l Inherited) {
	r.Names = append(r.Names, l.Name)
	r.Addrs = append(r.Addrs, l.Addr().String())
	rc, err := l.Listener.(syscall.Conn).SyscallConn()
	if err != nil {
		r.setErr(err)
		return
	}
	if err := rc.Control(r.addFlags); err != nil {
		r.setErr(err)
	}
}

func (r *report) emit() {
	r.EnvLeft = nil
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, envTrampoline+"=") {
			r.EnvLeft = append(r.EnvLeft, kv)
		}
	}
	b, err := json.Marshal(r)
	if err != nil {
		panic(err)
	}
	os.Stdout.Write(append(b, '\n'))
}

// exitWhenOrphaned ends the helper when the test closes its stdin or dies, so that no helper
// outlives a failed test.
func exitWhenOrphaned() {
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(3)
	}()
}

// helperServe inherits its listeners, reports, and answers one connection on each with its name.
func helperServe() int {
	exitWhenOrphaned()
	r := newReport()
	ls, err := Inherit()
	r.setErr(err)
	for _, l := range ls {
		r.addListener(l)
	}
	r.emit()
	if err != nil {
		return 1
	}
	for _, l := range ls {
		c, err := l.Accept()
		if err != nil {
			fmt.Fprintf(os.Stderr, "accept on %s: %v\n", l.Name, err)
			return 1
		}
		io.WriteString(c, l.Name)
		c.Close()
		l.Close()
	}
	return 0
}

// helperInherit reports what Inherit returned.
func helperInherit() int {
	exitWhenOrphaned()
	r := newReport()
	ls, err := Inherit()
	r.setErr(err)
	for _, l := range ls {
		r.addListener(l)
		l.Close()
	}
	r.emit()
	return 0
}

// helperAdopt reports what Adopt returned.
func helperAdopt() int {
	exitWhenOrphaned()
	r := newReport()
	socks, err := Adopt()
	r.setErr(err)
	for _, s := range socks {
		r.Names = append(r.Names, s.Name())
		r.Addrs = append(r.Addrs, s.Addr().String())
		if err := s.Control(r.addFlags); err != nil {
			r.setErr(err)
		}
		s.Close()
	}
	r.emit()
	return 0
}

// helperNonblock inherits its listeners, then reports their flags once at start and again for
// every byte read from stdin, until stdin closes.
func helperNonblock() int {
	r := newReport()
	ls, err := Inherit()
	r.setErr(err)
	for _, l := range ls {
		r.addListener(l)
	}
	r.emit()
	if err != nil {
		return 1
	}
	var b [1]byte
	for {
		if _, err := os.Stdin.Read(b[:]); err != nil {
			return 0
		}
		r.Names, r.Addrs, r.Cloexec, r.Nonblock = nil, nil, nil, nil
		for _, l := range ls {
			r.addListener(l)
		}
		r.emit()
	}
}

// helperListen reports what Listen returns for the address in HANDOFF_TEST_ADDR.
func helperListen() int {
	exitWhenOrphaned()
	r := newReport()
	a, err := ParseAddr(os.Getenv(addrEnv))
	if err == nil {
		var s *Socket
		if s, err = Listen(a); err == nil {
			s.Close()
		}
	}
	r.setErr(err)
	r.emit()
	return 0
}

// helperReplaced replaces its own executable on disk with a script, as a deploy would, then
// starts a shell through the trampoline and passes on its output and status.
func helperReplaced() int {
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	tmp := exe + ".new"
	if err := os.WriteFile(tmp, []byte("#!/bin/sh\necho replaced\nexit 9\n"), 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.Rename(tmp, exe); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	script := `echo "$LISTEN_PID $$ ${HANDOFF_TRAMPOLINE+set}"`
	path, argv, env := Trampoline("/bin/sh", []string{"sh", "-c", script}, append(os.Environ(), "LISTEN_FDS=1"))
	pid, _, err := syscall.StartProcess(path, argv, &syscall.ProcAttr{Env: env, Files: []uintptr{0, 1, 2}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var ws syscall.WaitStatus
	if _, err := syscall.Wait4(pid, &ws, 0, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return ws.ExitStatus()
}

func fdFlags(fd uintptr) (cloexec, nonblock bool, err error) {
	fdfl, err := unix.FcntlInt(fd, unix.F_GETFD, 0)
	if err != nil {
		return false, false, os.NewSyscallError("fcntl F_GETFD", err)
	}
	fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0)
	if err != nil {
		return false, false, os.NewSyscallError("fcntl F_GETFL", err)
	}
	return fdfl&unix.FD_CLOEXEC != 0, fl&unix.O_NONBLOCK != 0, nil
}

// listFds maps this process's open descriptors to what they are, as /proc/self/fd shows.
func listFds() map[int]string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil
	}
	m := make(map[int]string, len(ents))
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // the directory's own descriptor, closed by now
		}
		m[fd] = link
	}
	return m
}

// ---- the test's side ----

// deadline is when a test should give up waiting, derived from the test's own deadline.
func deadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-time.Until(d) / 10)
	}
	return time.Now().Add(time.Minute)
}

func testExe(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return exe
}

// copyExe copies the test binary into dir (readable and executable by all), so that it is a
// different file from the running executable.
func copyExe(t *testing.T, dir string) string {
	t.Helper()
	src, err := os.Open(testExe(t))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "helper.test")
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}

// checkFdLeak fails the test if it ends with more or fewer descriptors open than it began with.
// Call it first, so that its check runs after every other cleanup.
func checkFdLeak(t *testing.T) {
	t.Helper()
	before := openFds(t)
	t.Cleanup(func() {
		if after := openFds(t); len(after) != len(before) {
			t.Errorf("open descriptors: %d before the test, %d after:\nbefore %v\nafter  %v", len(before), len(after), before, after)
		}
	})
}

func openFds(t *testing.T) map[int]string {
	// Start the netpoller first, so its descriptors are counted before as well as after.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	return listFds()
}

func mustListen(t *testing.T, s string, opts ...Option) *Socket {
	t.Helper()
	a, err := ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	sock, err := Listen(a, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sock.Close() })
	return sock
}

// child is a process the test started, with its stdin and stdout as pipes to the test and its
// stderr in a file.
type child struct {
	pid     int
	proc    *os.Process
	stdin   *os.File
	stdout  *os.File
	out     *bufio.Reader
	errPath string
	state   *os.ProcessState
}

// start starts path with argv and env, giving it files as fd 3, 4, ... It is killed and reaped
// when the test ends if it has not been waited for.
func start(t *testing.T, path string, argv, env []string, files []uintptr, sys *syscall.SysProcAttr) *child {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	errPath := filepath.Join(t.TempDir(), "stderr")
	errF, err := os.Create(errPath)
	if err != nil {
		t.Fatal(err)
	}
	// Fd makes these blocking, which is what the child should get; the test keeps the other ends.
	fds := append([]uintptr{inR.Fd(), outW.Fd(), errF.Fd()}, files...)
	pid, _, err := syscall.StartProcess(path, argv, &syscall.ProcAttr{Dir: "/", Env: env, Files: fds, Sys: sys})
	inR.Close()
	outW.Close()
	errF.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		t.Fatalf("start %s: %v", path, err)
	}
	proc, err := os.FindProcess(pid)
	if err != nil {
		t.Fatalf("find pid %d: %v", pid, err)
	}
	c := &child{pid: pid, proc: proc, stdin: inW, stdout: outR, out: bufio.NewReader(outR), errPath: errPath}
	t.Cleanup(func() {
		if c.state == nil {
			c.proc.Kill()
			c.proc.Wait()
		}
		c.stdin.Close()
		c.stdout.Close()
	})
	return c
}

// helperEnviron is the environment for a child running helper: the test's own, the helper's
// name, and a race detector told not to sleep a second at exit (its default).
func helperEnviron(helper string) []string {
	race := "atexit_sleep_ms=0"
	if v := os.Getenv("GORACE"); v != "" {
		race = v + " " + race
	}
	return append(os.Environ(), helperEnv+"="+helper, "GORACE="+race)
}

// startHelper starts the test binary at exe as helper, through the trampoline, with socks as
// fd 3, 4, ... and env added to the environment.
func startHelper(t *testing.T, helper, exe string, socks []*Socket, env ...string) *child {
	t.Helper()
	env = append(append(helperEnviron(helper), env...), Env(socks)...)
	path, argv, env := Trampoline(exe, []string{exe}, env)
	var c *child
	if err := ControlAll(socks, func(fds []uintptr) { c = start(t, path, argv, env, fds, nil) }); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *child) stderr() string {
	b, _ := os.ReadFile(c.errPath)
	return string(b)
}

// line reads one line of the child's stdout.
func (c *child) line(t *testing.T) string {
	t.Helper()
	c.stdout.SetReadDeadline(deadline(t))
	s, err := c.out.ReadString('\n')
	if err != nil {
		t.Fatalf("reading pid %d's stdout: %v (got %q); its stderr:\n%s", c.pid, err, s, c.stderr())
	}
	return strings.TrimSuffix(s, "\n")
}

func (c *child) report(t *testing.T) report {
	t.Helper()
	var r report
	if s := c.line(t); json.Unmarshal([]byte(s), &r) != nil {
		t.Fatalf("pid %d wrote %q, not a report; its stderr:\n%s", c.pid, s, c.stderr())
	}
	return r
}

// wait reaps the child, killing it at the test's deadline.
func (c *child) wait(t *testing.T) *os.ProcessState {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		var err error
		c.state, err = c.proc.Wait()
		done <- err
	}()
	timer := time.NewTimer(time.Until(deadline(t)))
	defer timer.Stop()
	var err error
	select {
	case err = <-done:
	case <-timer.C:
		c.proc.Kill()
		err = <-done
		t.Errorf("pid %d did not exit by the deadline; killed it", c.pid)
	}
	if err != nil {
		t.Fatalf("wait for pid %d: %v", c.pid, err)
	}
	return c.state
}

// mustExit0 reaps the child and fails the test unless it exited with status 0.
func (c *child) mustExit0(t *testing.T) {
	t.Helper()
	if st := c.wait(t); !st.Success() {
		t.Errorf("pid %d: %v; its stderr:\n%s", c.pid, st, c.stderr())
	}
}

// dialRead connects to address and returns all it sends.
func dialRead(t *testing.T, network, address string) string {
	t.Helper()
	d := net.Dialer{Deadline: deadline(t)}
	c, err := d.Dial(network, address)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	defer c.Close()
	c.SetDeadline(deadline(t))
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read from %s %s: %v", network, address, err)
	}
	return string(b)
}

// socketLink is what /proc/self/fd shows for s's descriptor: "socket:[inode]".
func socketLink(t *testing.T, s *Socket) string {
	t.Helper()
	var link string
	var err error
	if cerr := s.Control(func(fd uintptr) { link, err = os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd)) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return link
}

// flagsOf returns s's descriptor flags.
func flagsOf(t *testing.T, s *Socket) (cloexec, nonblock bool) {
	t.Helper()
	var err error
	if cerr := s.Control(func(fd uintptr) { cloexec, nonblock, err = fdFlags(fd) }); cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cloexec, nonblock
}

// checkChildFds checks a helper's descriptors: stdio, then exactly the sockets in links as
// 3, 4, ..., and nothing else that could have leaked from the test (no socket, no pipe).
func checkChildFds(t *testing.T, r report, links []string) {
	t.Helper()
	for fd := range 3 + len(links) {
		if _, ok := r.Fds[fd]; !ok {
			t.Errorf("child has no fd %d: %v", fd, r.Fds)
		}
	}
	for i, link := range links {
		if got := r.Fds[3+i]; got != link {
			t.Errorf("child's fd %d is %q, want the supervisor's socket %q", 3+i, got, link)
		}
	}
	for fd, link := range r.Fds {
		if fd < 3+len(links) || inheritedFds[fd] == link {
			continue
		}
		if strings.HasPrefix(link, "socket:") || strings.HasPrefix(link, "pipe:") {
			t.Errorf("fd %d (%s) leaked into the child: %v", fd, link, r.Fds)
		}
	}
}

// inheritedFds are the descriptors the test binary was started with that are not
// close-on-exec: whoever ran the test left them so, and every child inherits them, so they are
// not our leak. TestMain fills it in before any test runs; it is read-only after that.
var inheritedFds map[int]string

func recordInheritedFds() {
	inheritedFds = make(map[int]string)
	for fd, link := range listFds() {
		if cloexec, _, err := fdFlags(uintptr(fd)); err == nil && !cloexec {
			inheritedFds[fd] = link
		}
	}
}

func allTrue(bs []bool) bool { return len(bs) > 0 && !slices.Contains(bs, false) }

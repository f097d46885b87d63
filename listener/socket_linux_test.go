package listener

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// inProcessListener makes a net.Listener in the test process from a duplicate of s's descriptor,
// the way a worker would, so the test can accept on s.
func inProcessListener(t *testing.T, s *Socket) net.Listener {
	t.Helper()
	var l net.Listener
	var err error
	cerr := s.Control(func(fd uintptr) {
		var d int
		if d, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); err != nil {
			return
		}
		f := os.NewFile(uintptr(d), "dup")
		l, err = net.FileListener(f)
		f.Close()
	})
	if cerr != nil {
		t.Fatal(cerr)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// roundTrip connects to s's address and checks that bytes go both ways through a connection
// accepted on s; it also checks that s is still close-on-exec and non-blocking afterwards.
func roundTrip(t *testing.T, s *Socket, network, address string) {
	t.Helper()
	l := inProcessListener(t, s)
	d := net.Dialer{Deadline: deadline(t)}
	c, err := d.Dial(network, address)
	if err != nil {
		t.Fatalf("dial %s %s: %v", network, address, err)
	}
	defer c.Close()
	c.SetDeadline(deadline(t))
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	sc.SetDeadline(deadline(t))
	if _, err := io.WriteString(sc, "hello"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "hello" {
		t.Fatalf("read %q, %v; want hello", buf, err)
	}
	if cloexec, nonblock := flagsOf(t, s); !cloexec || !nonblock {
		t.Errorf("socket: cloexec=%v nonblock=%v, want both", cloexec, nonblock)
	}
}

func abstractName() string {
	return fmt.Sprintf("@handoff-test-%d-%x", os.Getpid(), rand.Uint64())
}

func TestListenTCP(t *testing.T) {
	checkFdLeak(t)
	s := mustListen(t, "web=tcp://127.0.0.1:0")
	if s.Name() != "web" {
		t.Errorf("Name() = %q, want web", s.Name())
	}
	ta, ok := s.Addr().(*net.TCPAddr)
	if !ok || !ta.IP.Equal(net.IPv4(127, 0, 0, 1)) || ta.Port == 0 {
		t.Fatalf("Addr() = %#v, want 127.0.0.1 with the port the kernel chose", s.Addr())
	}
	roundTrip(t, s, "tcp", ta.String())
	if s := mustListen(t, "tcp6://[::1]:0"); s.Name() != "unknown" {
		t.Errorf("unnamed socket: Name() = %q, want unknown", s.Name())
	}
}

func TestListenUnix(t *testing.T) {
	checkFdLeak(t)
	path := filepath.Join(t.TempDir(), "s.sock")
	s := mustListen(t, "admin=unix://"+path)
	if ua, ok := s.Addr().(*net.UnixAddr); !ok || ua.Name != path || ua.Net != "unix" {
		t.Fatalf("Addr() = %#v, want unix %s", s.Addr(), path)
	}
	roundTrip(t, s, "unix", path)
}

func TestListenAbstract(t *testing.T) {
	checkFdLeak(t)
	name := abstractName()
	s := mustListen(t, "unix://"+name)
	if s.Addr().String() != name {
		t.Fatalf("Addr() = %q, want %q", s.Addr(), name)
	}
	roundTrip(t, s, "unix", name)
	_, err := Listen(Addr{Network: "unix", Address: name})
	if !errors.Is(err, ErrInUse) || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), name) {
		t.Errorf("second Listen on %s: %v; want ErrInUse and EADDRINUSE naming it", name, err)
	}
}

func TestListenBadInput(t *testing.T) {
	for _, tc := range []struct {
		a    Addr
		opts []Option
		want string
	}{
		{Addr{Network: "udp", Address: ":0"}, nil, "unknown network"},
		{Addr{Network: "tcp", Address: "127.0.0.1"}, nil, "missing port"},
		{Addr{Name: "a:b", Network: "tcp", Address: ":0"}, nil, "':'"},
		{Addr{Network: "tcp", Address: "127.0.0.1:0"}, []Option{WithBacklog(0)}, "backlog 0"},
		{Addr{Network: "tcp", Address: "127.0.0.1:0"}, []Option{WithBacklog(-3)}, "backlog -3"},
		{Addr{Network: "unix", Address: abstractName()}, []Option{WithReusePort()}, "SO_REUSEPORT"},
	} {
		if s, err := Listen(tc.a, tc.opts...); err == nil || !strings.Contains(err.Error(), tc.want) {
			if s != nil {
				s.Close()
			}
			t.Errorf("Listen(%#v) = %v, want an error containing %q", tc.a, err, tc.want)
		}
	}
}

// connectsUntilFull counts nonblocking connects to the unix socket at path that succeed before
// the kernel reports its accept queue full (EAGAIN), up to max.
func connectsUntilFull(t *testing.T, path string, max int) int {
	t.Helper()
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for len(fds) < max {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err == unix.EAGAIN {
			return len(fds) - 1
		} else if err != nil {
			t.Fatalf("connect %s: %v", path, err)
		}
	}
	return max
}

// TestListenBacklog checks the backlog through its one visible effect: for a unix stream
// socket the kernel refuses a nonblocking connect with EAGAIN once backlog+1 connections wait.
func TestListenBacklog(t *testing.T) {
	checkFdLeak(t)
	dir := t.TempDir()
	small := filepath.Join(dir, "small.sock")
	mustListen(t, "unix://"+small, WithBacklog(2))
	if n := connectsUntilFull(t, small, 64); n != 3 {
		t.Errorf("backlog 2: %d connections queued, want 3", n)
	}
	dflt := filepath.Join(dir, "default.sock")
	mustListen(t, "unix://"+dflt)
	if n := connectsUntilFull(t, dflt, 64); n != 64 {
		t.Errorf("default backlog: only %d connections queued, want at least 64", n)
	}
	mustListen(t, "tcp://127.0.0.1:0", WithBacklog(1)) // the same code path for TCP; it must not fail
}

func TestListenReusePort(t *testing.T) {
	checkFdLeak(t)
	s1 := mustListen(t, "tcp://127.0.0.1:0", WithReusePort())
	addr := s1.Addr().String()
	s2 := mustListen(t, "tcp://"+addr, WithReusePort())
	if s2.Addr().String() != addr {
		t.Errorf("second socket on %s", s2.Addr())
	}
	// Without SO_REUSEPORT the same address is refused, so the option is what made it work.
	if s3, err := Listen(Addr{Network: "tcp", Address: addr}); !errors.Is(err, ErrInUse) {
		if s3 != nil {
			s3.Close()
		}
		t.Errorf("Listen %s without SO_REUSEPORT: %v, want ErrInUse", addr, err)
	}
}

func TestListenPortInUse(t *testing.T) {
	checkFdLeak(t)
	s := mustListen(t, "tcp://127.0.0.1:0")
	addr := s.Addr().String()
	s2, err := Listen(Addr{Name: "web", Network: "tcp", Address: addr})
	if err == nil {
		s2.Close()
		t.Fatalf("second Listen on %s succeeded", addr)
	}
	if !errors.Is(err, ErrInUse) || !errors.Is(err, syscall.EADDRINUSE) || !strings.Contains(err.Error(), "web=tcp://"+addr) {
		t.Errorf("second Listen on %s: %v; want ErrInUse and EADDRINUSE naming the address", addr, err)
	}
}

// TestListenPrivilegedPort checks the error for a port below ip_unprivileged_port_start,
// running Listen as uid 65534 in a child when the test runs as root.
func TestListenPrivilegedPort(t *testing.T) {
	checkFdLeak(t)
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if err != nil {
		t.Skip(err)
	}
	if start, _ := strconv.Atoi(strings.TrimSpace(string(b))); start <= 1 {
		t.Skipf("ip_unprivileged_port_start is %d: no privileged ports", start)
	}
	const addr = "tcp://127.0.0.1:1"
	var r report
	if os.Getuid() == 0 {
		dir := t.TempDir()
		for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
			os.Chmod(d, 0o755) // t.TempDir's directories are private; uid 65534 must reach the binary
		}
		exe := copyExe(t, dir)
		env := append(helperEnviron("listen"), addrEnv+"="+addr)
		c := start(t, exe, []string{exe}, env, nil, &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}})
		r = c.report(t)
		c.mustExit0(t)
	} else {
		a, _ := ParseAddr(addr)
		s, err := Listen(a)
		if err == nil {
			s.Close()
			t.Skip("this process may bind privileged ports")
		}
		r.setErr(err)
	}
	if !strings.Contains(r.Err, "127.0.0.1:1") || !strings.Contains(r.Err, "CAP_NET_BIND_SERVICE") || !strings.Contains(strings.Join(r.Is, " "), "EACCES") {
		t.Errorf("Listen %s without privilege: %q (wraps %v); want EACCES naming the address", addr, r.Err, r.Is)
	}
}

func TestListenStaleUnixSocket(t *testing.T) {
	checkFdLeak(t)
	path := filepath.Join(t.TempDir(), "stale.sock")
	old, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	old.SetUnlinkOnClose(false)
	old.Close() // the file stays, with no socket behind it: a dead process's leftover
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("stale socket file: %v, %v", fi, err)
	}
	s := mustListen(t, "unix://"+path)
	roundTrip(t, s, "unix", path)
}

func TestListenLiveUnixSocket(t *testing.T) {
	checkFdLeak(t)
	path := filepath.Join(t.TempDir(), "live.sock")
	live, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	s, err := Listen(Addr{Network: "unix", Address: path})
	if err == nil {
		s.Close()
		t.Fatal("Listen on a live unix socket succeeded")
	}
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), path) {
		t.Errorf("Listen on a live unix socket: %v; want ErrInUse naming %s", err, path)
	}
	// The live listener keeps its file and still works; Listen's probe is in its queue.
	c, err := live.Accept()
	if err != nil {
		t.Fatalf("live listener after the probe: %v", err)
	}
	c.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Errorf("live socket file after Listen: %v, %v", fi, err)
	}
}

func TestListenNotASocket(t *testing.T) {
	checkFdLeak(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{file, sub, link} {
		s, err := Listen(Addr{Network: "unix", Address: path})
		if err == nil {
			s.Close()
			t.Errorf("Listen on %s succeeded", path)
		} else if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Listen on %s: %v; want it to say it is not a socket", path, err)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep me" {
		t.Errorf("regular file after Listen: %q, %v", b, err)
	}
	if fi, err := os.Stat(sub); err != nil || !fi.IsDir() {
		t.Errorf("directory after Listen: %v, %v", fi, err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode().Type() != os.ModeSymlink {
		t.Errorf("symlink after Listen: %v, %v", fi, err)
	}
}

func TestCloseKeepsUnixSocketFile(t *testing.T) {
	checkFdLeak(t)
	path := filepath.Join(t.TempDir(), "keep.sock")
	s, err := Listen(Addr{Network: "unix", Address: path})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("socket file after Close: %v, %v", fi, err)
	}
	// With every descriptor closed the file is stale, and the next Listen takes it over.
	s2 := mustListen(t, "unix://"+path)
	roundTrip(t, s2, "unix", path)
}

func TestCloseAndControl(t *testing.T) {
	checkFdLeak(t)
	s := mustListen(t, "tcp://127.0.0.1:0")
	var ino uint64
	var fd int
	err := s.Control(func(raw uintptr) {
		fd = int(raw)
		ino = inode(t, fd)
		// Close inside Control must neither deadlock nor close the fd under f's feet.
		if err := s.Close(); err != nil {
			t.Errorf("Close inside Control: %v", err)
		}
		if inode(t, fd) != ino {
			t.Errorf("fd %d was closed while Control ran", fd)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	// Now closed: fd is gone (or is something else by now).
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err == nil && st.Ino == ino {
		t.Errorf("fd %d still open after Control returned", fd)
	}
	if err := s.Control(func(uintptr) { t.Error("Control ran f after Close") }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Control after Close: %v, want net.ErrClosed", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}

	// A zero Socket has no descriptor: Close does not close fd 0, Control refuses.
	var zero Socket
	if err := zero.Close(); err != nil {
		t.Errorf("Close of a zero Socket: %v", err)
	}
	if err := zero.Control(func(uintptr) { t.Error("Control ran f on a zero Socket") }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Control of a zero Socket: %v, want net.ErrClosed", err)
	}
	if err := ControlAll([]*Socket{nil}, func([]uintptr) { t.Error("ControlAll ran f with a nil socket") }); err == nil {
		t.Error("ControlAll with a nil socket succeeded")
	}

	// ControlAll gives up on a closed socket and releases the ones it held.
	a := mustListen(t, "tcp://127.0.0.1:0")
	err = ControlAll([]*Socket{a, s}, func([]uintptr) { t.Error("ControlAll ran f with a closed socket") })
	if !errors.Is(err, net.ErrClosed) {
		t.Errorf("ControlAll with a closed socket: %v, want net.ErrClosed", err)
	}
	a.Control(func(raw uintptr) { fd, ino = int(raw), inode(t, int(raw)) })
	a.Close()
	if err := unix.Fstat(fd, &st); err == nil && st.Ino == ino {
		t.Errorf("ControlAll kept a hold on fd %d: Close did not close it", fd)
	}
}

func inode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat %d: %v", fd, err)
	}
	return st.Ino
}

func TestFromFd(t *testing.T) {
	checkFdLeak(t)
	for _, tc := range []struct{ network, address string }{
		{"tcp", "127.0.0.1:0"},
		{"tcp", "[::1]:0"},
		{"unix", filepath.Join(t.TempDir(), "s.sock")},
		{"unix", abstractName()},
	} {
		ln, err := net.Listen(tc.network, tc.address)
		if err != nil {
			t.Fatal(err)
		}
		// A descriptor as an old supervisor image would leave it: inheritable and, for the test,
		// blocking; AdoptFd must fix both.
		var fd int
		rc, _ := ln.(syscall.Conn).SyscallConn()
		rc.Control(func(raw uintptr) { fd, err = unix.Dup(int(raw)) })
		if err != nil {
			t.Fatal(err)
		}
		unix.SetNonblock(fd, false)
		want := ln.Addr()
		if ul, ok := ln.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		ln.Close()

		s, err := AdoptFd(fd, "web")
		if err != nil {
			unix.Close(fd)
			t.Fatalf("AdoptFd(%s %s): %v", tc.network, want, err)
		}
		if s.Name() != "web" || s.Addr().Network() != want.Network() || s.Addr().String() != want.String() {
			t.Errorf("AdoptFd: name %q addr %s %s; want web %s %s", s.Name(), s.Addr().Network(), s.Addr(), want.Network(), want)
		}
		roundTrip(t, s, tc.network, want.String()) // also checks cloexec and nonblock
		s.Close()
	}
}

func TestFromFdErrors(t *testing.T) {
	checkFdLeak(t)
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
	var pipeFd int
	rc, _ := r.SyscallConn()
	rc.Control(func(fd uintptr) { pipeFd = int(fd) })
	ok := mustListen(t, "tcp://127.0.0.1:0")
	var okFd int
	ok.Control(func(fd uintptr) { okFd = int(fd) })

	for _, tc := range []struct {
		fd   int
		name string
		want string
	}{
		{-1, "x", "negative"},
		{pipeFd, "x", fmt.Sprintf(`fd %d ("x"): not a socket`, pipeFd)},
		{pair[0], "x", fmt.Sprintf(`fd %d ("x"): a socket, but not listening`, pair[0])},
		{okFd, "a:b", "':'"},
		{okFd, "a=b", "'='"},
	} {
		if s, err := AdoptFd(tc.fd, tc.name); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("AdoptFd(%d, %q) = %v, %v; want an error containing %q", tc.fd, tc.name, s, err, tc.want)
		}
	}
	// A failed AdoptFd leaves the descriptor alone.
	if _, err := w.Write([]byte("x")); err != nil {
		t.Errorf("pipe after a failed AdoptFd: %v", err)
	}
	// A closed descriptor: take a number that is free now.
	nfd, _ := unix.Dup(okFd)
	unix.Close(nfd)
	if _, err := AdoptFd(nfd, "x"); !errors.Is(err, syscall.EBADF) {
		t.Errorf("AdoptFd on closed fd %d: %v, want EBADF", nfd, err)
	}
	if s, err := AdoptFd(okFd, ""); err != nil || s.Name() != "unknown" {
		t.Errorf(`AdoptFd(fd, "") = %v, %v; want a socket named unknown`, s, err)
	} // s and ok share okFd; ok's cleanup closes it
}

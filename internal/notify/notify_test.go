//go:build linux

package notify

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
	"golang.org/x/sys/unix"
)

// The helper processes of these tests, the test binary re-executed, are dispatched from init on
// HANDOFF_NOTIFY_TEST_HELPER, before TestMain.
const (
	notifyHelperEnv = "HANDOFF_NOTIFY_TEST_HELPER"
	notifyLeafEnv   = "HANDOFF_NOTIFY_TEST_LEAF" // the path the "tree" helper runs "leaf" by
)

func init() {
	switch os.Getenv(notifyHelperEnv) {
	case "":
	case "tree":
		os.Exit(notifyHelperTree())
	case "leaf":
		os.Exit(notifyHelperLeaf())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(notifyHelperEnv))
		os.Exit(2)
	}
}

// notifyHelperTree runs the "leaf" helper as its child, by the path in HANDOFF_NOTIFY_TEST_LEAF,
// with its own stdin, and waits for it.
func notifyHelperTree() int {
	cmd := exec.Command(os.Getenv(notifyLeafEnv))
	cmd.Env = append(os.Environ(), notifyHelperEnv+"=leaf")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "tree:", err)
		return 1
	}
	return 0
}

// notifyHelperLeaf sends READY=1 and STATUS=leaf to $NOTIFY_SOCKET, then waits for EOF on stdin.
func notifyHelperLeaf() int {
	if sent, err := worker.Notify("READY=1\nSTATUS=leaf"); err != nil || !sent {
		fmt.Fprintln(os.Stderr, "leaf: notify:", sent, err)
		return 1
	}
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// ---- parsing ----

func TestParseNotify(t *testing.T) {
	big := "STATUS=" + strings.Repeat("x", maxDatagram-len("STATUS="))
	for _, tc := range []struct {
		in   string
		want Msg
	}{
		{"", Msg{}},
		{"\n\n", Msg{}},
		{"READY=1", Msg{Ready: true}},
		{"READY=1\nSTATUS=serving: 3 workers = ok\n", Msg{Ready: true, Status: "serving: 3 workers = ok"}},
		{"\nSTOPPING=1\n\n", Msg{Stopping: true}},
		{"RELOADING=1\nMONOTONIC_USEC=1234", Msg{Reloading: true}},
		{"WATCHDOG=1", Msg{Watchdog: true}},
		{"WATCHDOG=trigger", Msg{WatchdogTrigger: true}},
		{"WATCHDOG=trigger\nWATCHDOG=1", Msg{Watchdog: true, WatchdogTrigger: true}},
		{"WATCHDOG_USEC=18446744073709551615", Msg{WatchdogUsec: 1<<64 - 1}},
		{"ERRNO=2\nSTATUS=no such file", Msg{Errno: 2, Status: "no such file"}},
		{"ERRNO=0", Msg{}},
		{"MAINPID=4194304", Msg{MainPID: 4194304}},
		{"MAINPID=007", Msg{MainPID: 7}},
		{"STATUS=", Msg{}},
		{"STATUS=héllo ✓\tand a tab", Msg{Status: "héllo ✓\tand a tab"}},
		// The first assignment of a repeated key counts, as in systemd.
		{"STATUS=first\nSTATUS=second", Msg{Status: "first"}},
		{"MAINPID=5\nMAINPID=6\nERRNO=1\nERRNO=2", Msg{MainPID: 5, Errno: 1}},
		// Unknown keys are ignored.
		{"FDSTORE=1\nFDNAME=web\nBARRIER=1\nEXTEND_TIMEOUT_USEC=5\nX_CUSTOM_9=any thing=at all", Msg{}},
		{big, Msg{Status: big[len("STATUS="):]}},
	} {
		got, err := Parse([]byte(tc.in))
		if err != nil || got != tc.want {
			t.Errorf("Parse(%.40q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseNotifyErrors(t *testing.T) {
	long := strings.Repeat("y", 200)
	for _, tc := range []struct{ in, want string }{
		{strings.Repeat("x", maxDatagram+1), "4097 bytes"},
		{"READY=1\x00", "NUL byte at offset 7"},
		{"READY", `line 1 "READY"`},
		{"READY=1\n\nready=1", `line 3 "ready=1"`},
		{"=1", `line 1 "=1"`},
		{"READY =1", `line 1 "READY =1"`},
		{"READY=1\r\n", `READY="1\r"`},
		{"READY=2", `READY="2": want 1`},
		{"READY=", `READY="": want 1`},
		{"STOPPING=yes", `STOPPING="yes"`},
		{"RELOADING=0", `RELOADING="0"`},
		{"WATCHDOG=2", `WATCHDOG="2": want 1 or trigger`},
		{"STATUS=\xff", `STATUS="\xff": not UTF-8`},
		{"ERRNO=abc", `ERRNO="abc"`},
		{"ERRNO=-1", `ERRNO="-1"`},
		{"ERRNO=+1", `ERRNO="+1"`},
		{"ERRNO= 1", `ERRNO=" 1"`},
		{"ERRNO=2147483648", `ERRNO="2147483648"`},
		{"MAINPID=0", `MAINPID="0": want a decimal number from 1 to 4194304`},
		{"MAINPID=-5", `MAINPID="-5"`},
		{"MAINPID=4194305", `MAINPID="4194305"`},
		{"MAINPID=99999999999999999999999", `MAINPID="99999999999999999999999"`},
		{"MAINPID=1\nMAINPID=x", `MAINPID="x"`}, // a later, ignored assignment must be valid too
		{"WATCHDOG_USEC=18446744073709551616", `WATCHDOG_USEC="18446744073709551616"`},
		{"WATCHDOG_USEC=1e6", `WATCHDOG_USEC="1e6"`},
		{long, `line 1 "` + long[:64] + `"...`},
	} {
		m, err := Parse([]byte(tc.in))
		if err == nil {
			t.Errorf("Parse(%.40q) = %+v, want an error", tc.in, m)
			continue
		}
		if msg := err.Error(); !strings.HasPrefix(msg, "notify: ") || !strings.Contains(msg, tc.want) || len(msg) > 150 {
			t.Errorf("Parse(%.40q): error %q, want one of at most 150 bytes holding %q", tc.in, msg, tc.want)
		}
		if m != (Msg{}) {
			t.Errorf("Parse(%.40q) returned %+v with its error", tc.in, m)
		}
	}
}

// formatNotify renders m as a datagram, in a fixed order, leaving out zero fields.
func formatNotify(m Msg) []byte {
	var lines []string
	for _, f := range []struct {
		on   bool
		line string
	}{
		{m.Ready, "READY=1"}, {m.Reloading, "RELOADING=1"}, {m.Stopping, "STOPPING=1"},
		{m.Watchdog, "WATCHDOG=1"}, {m.WatchdogTrigger, "WATCHDOG=trigger"},
		{m.Status != "", "STATUS=" + m.Status},
		{m.Errno != 0, "ERRNO=" + strconv.Itoa(m.Errno)},
		{m.MainPID != 0, "MAINPID=" + strconv.Itoa(m.MainPID)},
		{m.WatchdogUsec != 0, "WATCHDOG_USEC=" + strconv.FormatUint(m.WatchdogUsec, 10)},
	} {
		if f.on {
			lines = append(lines, f.line)
		}
	}
	return []byte(strings.Join(lines, "\n"))
}

// FuzzParseNotify checks that Parse never panics, that whatever it accepts, rendered
// canonically, parses back to the same message (and is no longer), and that it rejects what is
// too big with an error of its own.
func FuzzParseNotify(f *testing.F) {
	for _, s := range []string{
		"", "READY=1", "READY=1\nSTATUS=serving\n", "STOPPING=1\nERRNO=5", "RELOADING=1\nMONOTONIC_USEC=1",
		"WATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=30000000", "MAINPID=123\nMAINPID=x",
		"STATUS=a=b=c", "STATUS=\xff", "READY=2", "ready=1", "=", "\n\n=\n", "FDSTORE=1\nFDNAME=a:b",
		"MAINPID=4194305", "ERRNO=2147483647", "READY=1\x00", "STATUS=" + strings.Repeat("z", 4090),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Parse(b)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "notify: ") {
				t.Fatalf("error %q lacks the notify: prefix", err)
			}
			return
		}
		if len(b) > maxDatagram {
			t.Fatalf("accepted %d bytes", len(b))
		}
		if m.Pid != 0 {
			t.Fatalf("Pid %d from a payload", m.Pid)
		}
		out := formatNotify(m)
		if len(out) > len(b) {
			t.Fatalf("%q renders longer, as %q", b, out)
		}
		back, err := Parse(out)
		if err != nil || back != m {
			t.Fatalf("%q parsed to %+v, rendered as %q, parsed back to %+v, %v", b, m, out, back, err)
		}
	})
}

func TestStatPPid(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"123 (sh) S 45 123 123 0 -1 4194560\n", 45},
		{"123 (a) b (c) d) R 456 1 1", 456}, // comm "a) b (c) d"
		{"7 ()) S 1 ", 1},
		{"1 (init) S 0 1 1", 0}, // pid 1, or a parent outside the pid namespace
	} {
		if got, err := statPPid([]byte(tc.in)); err != nil || got != tc.want {
			t.Errorf("statPPid(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "123 sh S 45", "123 (sh)", "123 (sh) S", "123 (sh) S x", "123 (sh) S -2"} {
		if got, err := statPPid([]byte(in)); err == nil {
			t.Errorf("statPPid(%q) = %d, want an error", in, got)
		}
	}
}

// ---- the socket ----

// notifyRecv is a Socket being served, its messages on a channel.
type notifyRecv struct {
	n    *Socket
	msgs chan Msg
	done chan error // serve's result
}

// notifyServe serves n until the test ends. The channel holds more messages than any test
// sends, so deliver never blocks and Close always ends serve.
func notifyServe(t *testing.T, n *Socket) *notifyRecv {
	t.Helper()
	r := &notifyRecv{n: n, msgs: make(chan Msg, 512), done: make(chan error, 1)}
	go func() { r.done <- n.Serve(func(m Msg) { r.msgs <- m }) }()
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-r.done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return r
}

// notifyOpen opens a notify socket and serves it until the test ends.
func notifyOpen(t *testing.T) *notifyRecv {
	t.Helper()
	n, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	return notifyServe(t, n)
}

func (r *notifyRecv) next(t *testing.T) Msg {
	t.Helper()
	timer := time.NewTimer(time.Until(notifyDeadline(t)))
	defer timer.Stop()
	select {
	case m := <-r.msgs:
		return m
	case <-timer.C:
		t.Fatalf("no notify message; dropped so far %+v", r.n.Dropped())
		return Msg{}
	}
}

// notifyDeadline is when a test should give up waiting, derived from the test's deadline.
func notifyDeadline(t *testing.T) time.Time {
	if d, ok := t.Deadline(); ok {
		return d.Add(-time.Until(d) / 10)
	}
	return time.Now().Add(time.Minute)
}

// notifySender sends datagrams to one notify socket from one socket of its own, so that they
// arrive in order. It blocks while the receiver's queue is full.
type notifySender struct {
	fd int
	to unix.SockaddrUnix
}

func notifyDial(t *testing.T, name string) *notifySender {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &notifySender{fd: fd, to: unix.SockaddrUnix{Name: name}}
}

func notifySend(t *testing.T, s *notifySender, payload []byte, fds ...int) {
	t.Helper()
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := unix.Sendmsg(s.fd, payload, oob, &s.to, 0); err != nil {
		t.Fatalf("sendmsg to %s: %v", s.to.Name, err)
	}
}

// notifyCheckFds fails the test if it ends with other descriptors open than it began with. Call
// it first, so that its check runs after every other cleanup.
func notifyCheckFds(t *testing.T) {
	t.Helper()
	before := notifyFds(t)
	t.Cleanup(func() {
		if after := notifyFds(t); !slices.Equal(after, before) {
			t.Errorf("open descriptors: before the test %v, after %v", before, after)
		}
	})
}

// notifyFds lists this process's descriptors and what they are.
func notifyFds(t *testing.T) []string {
	t.Helper()
	// Start the netpoller first, so that its descriptors are there before as well as after.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	w.Close()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	var fds []string
	for _, e := range ents {
		link, _ := os.Readlink("/proc/self/fd/" + e.Name())
		fds = append(fds, e.Name()+"="+link)
	}
	return fds
}

// notifyFlags reports the descriptor flags of n's socket.
func notifyFlags(t *testing.T, n *Socket) (cloexec, nonblock, passcred bool) {
	t.Helper()
	err := n.Control(func(fd uintptr) {
		fdfl, err1 := unix.FcntlInt(fd, unix.F_GETFD, 0)
		fl, err2 := unix.FcntlInt(fd, unix.F_GETFL, 0)
		pc, err3 := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED)
		if err := errors.Join(err1, err2, err3); err != nil {
			t.Error(err)
		}
		cloexec, nonblock, passcred = fdfl&unix.FD_CLOEXEC != 0, fl&unix.O_NONBLOCK != 0, pc != 0
	})
	if err != nil {
		t.Fatal(err)
	}
	return cloexec, nonblock, passcred
}

func TestOpenNotifySocket(t *testing.T) {
	notifyCheckFds(t)
	a, b := notifyOpen(t), notifyOpen(t)
	re := regexp.MustCompile(`^@handoff-` + strconv.Itoa(os.Getpid()) + `-[0-9a-f]{16}$`)
	for _, r := range []*notifyRecv{a, b} {
		if !re.MatchString(r.n.Name()) {
			t.Errorf("name %q does not match %s", r.n.Name(), re)
		}
		if cloexec, nonblock, passcred := notifyFlags(t, r.n); !cloexec || !nonblock || !passcred {
			t.Errorf("%s: close-on-exec %t, non-blocking %t, SO_PASSCRED %t; want all", r.n.Name(), cloexec, nonblock, passcred)
		}
	}
	if a.n.Name() == b.n.Name() {
		t.Errorf("two sockets named %q", a.n.Name())
	}
	if d := a.n.Dropped(); d != (Drops{}) {
		t.Errorf("dropped %+v before any datagram", d)
	}
}

// TestNotifyFromGo sends with worker.Notify, in this process: the kernel names this process as
// the sender.
func TestNotifyFromGo(t *testing.T) {
	notifyCheckFds(t)
	r := notifyOpen(t)
	t.Setenv("NOTIFY_SOCKET", r.n.Name())
	self := os.Getpid()
	for _, tc := range []struct {
		state string
		want  Msg
	}{
		{"READY=1\nSTATUS=hi\nMAINPID=" + strconv.Itoa(self) + "\nX_UNKNOWN=whatever",
			Msg{Ready: true, Status: "hi", MainPID: self}},
		{"RELOADING=1\nMONOTONIC_USEC=123", Msg{Reloading: true}},
		{"WATCHDOG=1\nWATCHDOG=trigger\nWATCHDOG_USEC=30000000", Msg{Watchdog: true, WatchdogTrigger: true, WatchdogUsec: 30000000}},
		{"STOPPING=1\nERRNO=5", Msg{Stopping: true, Errno: 5}},
	} {
		if sent, err := worker.Notify(tc.state); !sent || err != nil {
			t.Fatalf("Notify(%q) = %t, %v", tc.state, sent, err)
		}
		tc.want.Pid = self
		if m := r.next(t); m != tc.want {
			t.Errorf("Notify(%q) delivered %+v, want %+v", tc.state, m, tc.want)
		}
	}
	// An empty datagram is a message with no assignments, as one holding only unknown keys.
	notifySend(t, notifyDial(t, r.n.Name()), nil)
	if m := r.next(t); m != (Msg{Pid: self}) {
		t.Errorf("empty datagram delivered %+v", m)
	}
	if d := r.n.Dropped(); d != (Drops{}) {
		t.Errorf("dropped %+v", d)
	}
}

// TestNotifySystemdNotify has the reference sender, systemd-notify, talk to the abstract socket.
//
// Measured with systemd 252: systemd-notify sends two datagrams. The first holds the state; its
// credentials name systemd-notify's parent (not itself) when it may forge them, i.e. when it runs
// as root (CAP_SYS_ADMIN); otherwise the kernel refuses (EPERM), it sends again without forging,
// and the credentials name systemd-notify itself, a short-lived child of whoever ran it. That is
// why a supervisor needs NotifyAccess=all semantics (DescendantOf) for a worker that is a shell
// script calling systemd-notify. "--pid=self" forges nothing: it sends MAINPID=<its own pid>
// with its own credentials. The second datagram is BARRIER=1, from systemd-notify itself, with
// the write end of a pipe: systemd-notify waits up to 5 seconds for the receiver to close it and
// exits 1 if it does not, so its exit status 0 proves the descriptor was closed.
func TestNotifySystemdNotify(t *testing.T) {
	bin, err := exec.LookPath("systemd-notify")
	if err != nil {
		t.Skip("systemd-notify is not installed")
	}
	self := os.Getpid()
	for _, tc := range []struct {
		name string
		args []string
		cred *syscall.Credential
		want func(pid int) Msg // pid: systemd-notify's
	}{
		{"ready", []string{"--ready", "--status=hi there"}, nil, func(pid int) Msg {
			if os.Geteuid() == 0 {
				return Msg{Pid: self, Ready: true, Status: "hi there"} // forged: its parent, this process
			}
			return Msg{Pid: pid, Ready: true, Status: "hi there"}
		}},
		{"pid=self", []string{"--ready", "--pid=self"}, nil, func(pid int) Msg {
			return Msg{Pid: pid, Ready: true, MainPID: pid}
		}},
		{"unprivileged", []string{"--status=from nobody", "STOPPING=1"}, &syscall.Credential{Uid: 65534, Gid: 65534},
			func(pid int) Msg { return Msg{Pid: pid, Stopping: true, Status: "from nobody"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.cred != nil && os.Geteuid() != 0 {
				t.Skip("needs root to run systemd-notify as another user")
			}
			notifyCheckFds(t)
			r := notifyOpen(t)
			cmd := exec.Command(bin, tc.args...)
			cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+r.n.Name())
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: tc.cred}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := cmd.Process.Pid
			state, barrier := r.next(t), r.next(t)
			if want := tc.want(pid); state != want {
				t.Errorf("state: got %+v, want %+v (systemd-notify is pid %d, this process %d)", state, want, pid, self)
			}
			if want := (Msg{Pid: pid}); barrier != want {
				t.Errorf("barrier: got %+v, want %+v", barrier, want)
			}
			// Whoever sent it, the message maps to this process, as a worker's would. (Until
			// Wait, systemd-notify is at least a zombie, with its parent in /proc.)
			if w, ok := DescendantOf(state.Pid, func(p int) bool { return p == self }); !ok || w != self {
				t.Errorf("DescendantOf(%d) = %d, %t; want %d", state.Pid, w, ok, self)
			}
			if err := cmd.Wait(); err != nil {
				t.Errorf("systemd-notify: %v, output %q", err, out.String())
			}
			if d := r.n.Dropped(); d != (Drops{FdsClosed: 1}) {
				t.Errorf("dropped %+v, want the barrier's descriptor closed and nothing else", d)
			}
		})
	}
}

func TestNotifyOversized(t *testing.T) {
	notifyCheckFds(t)
	r := notifyOpen(t)
	c := notifyDial(t, r.n.Name())
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	notifySend(t, c, []byte("STATUS="+strings.Repeat("x", maxDatagram+1-len("STATUS="))))
	notifySend(t, c, []byte("READY=1\nSTATUS="+strings.Repeat("x", 10000)), p[1])
	fits := "STATUS=" + strings.Repeat("y", maxDatagram-len("STATUS="))
	notifySend(t, c, []byte(fits))
	// Datagrams from one socket arrive in order: by the time the last is delivered, the
	// others have been dropped.
	if m := r.next(t); m.Status != fits[len("STATUS="):] || m.Ready {
		t.Errorf("got Ready %t and a status of %d bytes, want the one of %d bytes", m.Ready, len(m.Status), len(fits)-len("STATUS="))
	}
	if d := r.n.Dropped(); d != (Drops{Oversized: 2, FdsClosed: 1}) {
		t.Errorf("dropped %+v, want 2 oversized and 1 descriptor closed", d)
	}
}

func TestNotifyMalformed(t *testing.T) {
	notifyCheckFds(t)
	r := notifyOpen(t)
	c := notifyDial(t, r.n.Name())
	bad := []string{"READY=2", "ready=1", "READY", "=1", "ERRNO=abc", "MAINPID=0", "MAINPID=-1",
		"MAINPID=99999999999", "STATUS=a\x00b", "STATUS=\xff", "READY=1\nSTATUS=ok\nbogus line"}
	for _, s := range bad {
		notifySend(t, c, []byte(s))
	}
	notifySend(t, c, []byte("READY=1"))
	if m := r.next(t); m != (Msg{Pid: os.Getpid(), Ready: true}) {
		t.Errorf("got %+v, want the one valid message", m)
	}
	if d := r.n.Dropped(); d != (Drops{Malformed: uint64(len(bad))}) {
		t.Errorf("dropped %+v, want %d malformed", d, len(bad))
	}
}

// TestNotifyFdsClosed sends descriptors with valid, oversized and malformed datagrams, and with
// the most a datagram can carry: every one is closed, so the count of open descriptors is the
// same, and the pipe whose write end was sent reads EOF once this process closes its own.
func TestNotifyFdsClosed(t *testing.T) {
	notifyCheckFds(t)
	r := notifyOpen(t)
	c := notifyDial(t, r.n.Name())
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		t.Fatal(err)
	}
	rd, wr := p[0], p[1]
	defer unix.Close(rd)
	wrOpen := true
	defer func() {
		if wrOpen {
			unix.Close(wr)
		}
	}()
	before := notifyFds(t)

	notifySend(t, c, []byte("READY=2"), wr)
	notifySend(t, c, bytes.Repeat([]byte{'x'}, maxDatagram+1), wr)
	notifySend(t, c, []byte("FDSTORE=1\nFDNAME=all"), slices.Repeat([]int{wr}, scmMaxFd)...)
	const sends = 100
	for i := range sends {
		notifySend(t, c, []byte("FDSTORE=1\nSTATUS="+strconv.Itoa(i)), wr)
	}
	if m := r.next(t); m != (Msg{Pid: os.Getpid()}) {
		t.Errorf("got %+v, want an empty message from FDSTORE=1 with %d descriptors", m, scmMaxFd)
	}
	for i := range sends {
		if m := r.next(t); m.Status != strconv.Itoa(i) {
			t.Fatalf("message %d has status %q", i, m.Status)
		}
	}
	if after := notifyFds(t); !slices.Equal(after, before) {
		t.Errorf("open descriptors: %d before sending, %d after: %v", len(before), len(after), after)
	}
	want := Drops{Malformed: 1, Oversized: 1, FdsClosed: 2 + scmMaxFd + sends}
	if d := r.n.Dropped(); d != want {
		t.Errorf("dropped %+v, want %+v", d, want)
	}
	unix.Close(wr)
	wrOpen = false
	if n, err := unix.Read(rd, make([]byte, 1)); n != 0 || err != nil {
		t.Errorf("pipe read %d, %v after closing its write end here: a copy is still open", n, err)
	}
}

// TestNotifyNoCredentials adopts a socket that was bound without SO_PASSCRED and already holds a
// datagram: that one carries no sender and is dropped; those sent after the adoption have one.
// It is the only way to make a datagram without credentials once SO_PASSCRED is set.
func TestNotifyNoCredentials(t *testing.T) {
	notifyCheckFds(t)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	adopted := false
	defer func() {
		if !adopted {
			unix.Close(fd)
		}
	}()
	name := "@handoff-test-" + strconv.Itoa(os.Getpid()) + "-nocred"
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	c := notifyDial(t, name)
	notifySend(t, c, []byte("READY=1\nSTATUS=early"))
	before := notifyFds(t)
	n, err := FromFd(fd)
	if err != nil {
		t.Fatal(err)
	}
	adopted = true
	if after := notifyFds(t); len(after) != len(before) {
		t.Errorf("adopting changed the open descriptors from %v to %v", before, after)
	}
	r := notifyServe(t, n)
	if n.Name() != name {
		t.Errorf("name %q, want %q", n.Name(), name)
	}
	notifySend(t, c, []byte("READY=1\nSTATUS=late"))
	if m := r.next(t); m != (Msg{Pid: os.Getpid(), Ready: true, Status: "late"}) {
		t.Errorf("got %+v, want the later message", m)
	}
	if d := n.Dropped(); d != (Drops{NoCredentials: 1}) {
		t.Errorf("dropped %+v, want 1 without credentials", d)
	}
}

// TestNotifySocketFromFd hands a notify socket on as an inherited descriptor would be: a
// duplicate without close-on-exec, adopted while the original is closed.
func TestNotifySocketFromFd(t *testing.T) {
	notifyCheckFds(t)
	old, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	dup := -1
	if err := old.Control(func(fd uintptr) { dup, err = unix.Dup(int(fd)) }); err != nil || dup < 0 {
		t.Fatal(err)
	}
	n, err := FromFd(dup)
	if err != nil {
		unix.Close(dup)
		t.Fatal(err)
	}
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	r := notifyServe(t, n)
	if n.Name() != old.Name() {
		t.Errorf("adopted name %q, want %q", n.Name(), old.Name())
	}
	if cloexec, nonblock, passcred := notifyFlags(t, n); !cloexec || !nonblock || !passcred {
		t.Errorf("close-on-exec %t, non-blocking %t, SO_PASSCRED %t; want all", cloexec, nonblock, passcred)
	}
	t.Setenv("NOTIFY_SOCKET", n.Name())
	if err := worker.Ready(); err != nil {
		t.Fatal(err)
	}
	if m := r.next(t); m != (Msg{Pid: os.Getpid(), Ready: true}) {
		t.Errorf("got %+v, want READY from this process", m)
	}
}

func TestNotifySocketFromFdErrors(t *testing.T) {
	notifyCheckFds(t)
	socket := func(domain, typ int) func(t *testing.T) int {
		return func(t *testing.T) int {
			fd, err := unix.Socket(domain, typ|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}
	}
	for _, tc := range []struct {
		name string
		fd   func(t *testing.T) int
		want string
	}{
		{"pipe", func(t *testing.T) int {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			return p[0]
		}, "not a socket"},
		{"stream", socket(unix.AF_UNIX, unix.SOCK_STREAM), "not a unix datagram socket"},
		{"udp", socket(unix.AF_INET, unix.SOCK_DGRAM), "not a unix datagram socket"},
		{"unbound", socket(unix.AF_UNIX, unix.SOCK_DGRAM), "not bound"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fd := tc.fd(t)
			defer unix.Close(fd)
			n, err := FromFd(fd)
			if err == nil {
				n.Close()
				t.Fatal("no error")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), fmt.Sprintf("fd %d", fd)) {
				t.Errorf("error %q, want one naming fd %d and saying %q", err, fd, tc.want)
			}
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
				t.Errorf("fd %d closed by the failed adoption: %v", fd, err)
			}
		})
	}
	if _, err := FromFd(-1); err == nil || !strings.Contains(err.Error(), "fd -1") {
		t.Errorf("fd -1: error %v", err)
	}
}

func TestNotifySocketClose(t *testing.T) {
	notifyCheckFds(t)
	n, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	// Two serves: one reads until Close, the other is refused at once.
	done := make(chan error, 2)
	for range 2 {
		go func() { done <- n.Serve(func(Msg) {}) }()
	}
	timer := time.NewTimer(time.Until(notifyDeadline(t)))
	defer timer.Stop()
	for i := range 2 {
		if i == 1 {
			if err := n.Close(); err != nil {
				t.Fatal(err)
			}
		}
		select {
		case err := <-done:
			if i == 0 && (err == nil || !strings.Contains(err.Error(), "twice")) {
				t.Errorf("serve returned %v before Close, want the second one refused", err)
			}
			if i == 1 && err != nil {
				t.Errorf("serve returned %v after Close, want nil", err)
			}
		case <-timer.C:
			t.Fatal("serve did not return")
		}
	}
	if err := n.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := n.Control(func(uintptr) { t.Error("Control called f after Close") }); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Control after Close: %v, want net.ErrClosed", err)
	}

	// Closed before serve: serve returns nil at once.
	n2, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	n2.Close()
	if err := n2.Serve(func(Msg) {}); err != nil {
		t.Errorf("serve after Close: %v, want nil", err)
	}
}

// ---- DescendantOf ----

// TestDescendantOf runs a real process tree: this test starts "tree", which starts "leaf" through
// a symlink named so that its comm, "a) b (c) d", holds spaces and parentheses. The leaf notifies;
// DescendantOf maps its pid to each ancestor in turn.
func TestDescendantOf(t *testing.T) {
	notifyCheckFds(t)
	r := notifyOpen(t)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	const comm = "a) b (c) d"
	leafPath := filepath.Join(t.TempDir(), comm)
	if err := os.Symlink(exe, leafPath); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), notifyHelperEnv+"=tree", notifyLeafEnv+"="+leafPath,
		"NOTIFY_SOCKET="+r.n.Name(), "GORACE=atexit_sleep_ms=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	tree, self := cmd.Process.Pid, os.Getpid()
	exited := false
	defer func() {
		if !exited {
			stdin.Close()
			cmd.Wait()
		}
	}()

	m := r.next(t)
	leaf := m.Pid
	if want := (Msg{Pid: leaf, Ready: true, Status: "leaf"}); m != want || leaf == tree || leaf == self {
		t.Fatalf("got %+v, want %+v from a pid other than tree's %d and this process's %d", m, want, tree, self)
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(leaf) + "/comm"); err != nil || string(b) != comm+"\n" {
		t.Errorf("leaf's comm %q, %v; want %q", b, err, comm)
	}

	var asked []int
	ask := func(worker int) (int, bool) {
		asked = asked[:0]
		return DescendantOf(leaf, func(p int) bool { asked = append(asked, p); return p == worker })
	}
	if w, ok := ask(leaf); !ok || w != leaf || !slices.Equal(asked, []int{leaf}) {
		t.Errorf("worker leaf: %d, %t after asking about %v", w, ok, asked)
	}
	if w, ok := ask(tree); !ok || w != tree || !slices.Equal(asked, []int{leaf, tree}) {
		t.Errorf("worker tree: %d, %t after asking about %v; want %d", w, ok, asked, tree)
	}
	if w, ok := ask(self); !ok || w != self || !slices.Equal(asked, []int{leaf, tree, self}) {
		t.Errorf("worker self: %d, %t after asking about %v; want %d", w, ok, asked, self)
	}
	if w, ok := ask(-1); ok || len(asked) < 3 || len(asked) > maxAncestors+1 || !slices.Equal(asked[:3], []int{leaf, tree, self}) {
		t.Errorf("no worker: %d, %t after asking about %v", w, ok, asked)
	} else if last := asked[len(asked)-1]; last != 1 {
		// The walk ends at pid 1, or below a process whose parent is outside the pid namespace.
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(last) + "/stat"); err != nil {
			t.Error(err)
		} else if ppid, err := statPPid(b); err != nil || ppid != 0 {
			t.Errorf("walk stopped at %d, whose parent is %d, %v", last, ppid, err)
		}
	}

	stdin.Close()
	exited = true
	if err := cmd.Wait(); err != nil {
		t.Fatalf("tree: %v, output %q", err, out.String())
	}
	// Both are gone (and reaped): nothing to walk.
	for _, pid := range []int{leaf, tree} {
		called := 0
		if w, ok := DescendantOf(pid, func(int) bool { called++; return false }); ok || called != 1 {
			t.Errorf("DescendantOf(%d) after exit = %d, %t, asking %d times", pid, w, ok, called)
		}
	}
	for _, pid := range []int{0, -5} {
		if w, ok := DescendantOf(pid, func(int) bool { t.Errorf("isWorker called for pid %d", pid); return true }); ok {
			t.Errorf("DescendantOf(%d) = %d, true", pid, w)
		}
	}
}

// TestNotifyReadErrorIsNotTheEnd: a recvmsg error (ENOMEM, ENOBUFS: the
// kernel short of memory) is counted, and the reader goes on: a worker's
// READY=1 after it still arrives.
func TestNotifyReadErrorIsNotTheEnd(t *testing.T) {
	n, err := Open()
	if err != nil {
		t.Fatal(err)
	}
	var calls atomic.Int32
	n.recvmsg = func(fd int, p, oob []byte, flags int) (int, int, int, unix.Sockaddr, error) {
		if calls.Add(1) <= 3 {
			return 0, 0, 0, nil, unix.ENOMEM
		}
		return unix.Recvmsg(fd, p, oob, flags)
	}
	r := notifyServe(t, n)
	notifySend(t, notifyDial(t, n.Name()), []byte("READY=1"))
	timer := time.NewTimer(time.Until(notifyDeadline(t)))
	defer timer.Stop()
	select {
	case m := <-r.msgs:
		if !m.Ready {
			t.Fatalf("delivered %+v, want READY=1", m)
		}
	case err := <-r.done:
		r.done <- err // for the cleanup
		t.Fatalf("the reader ended at a recvmsg error: %v", err)
	case <-timer.C:
		t.Fatal("no message after a recvmsg error")
	}
	if d := n.Dropped(); d.ReadErrors != 3 {
		t.Errorf("dropped %+v, want 3 read errors", d)
	}
}

// TestMonotonicUsec: the clock systemd's MONOTONIC_USEC wants, which does
// not go back.
func TestMonotonicUsec(t *testing.T) {
	a := MonotonicUsec()
	b := MonotonicUsec()
	if a <= 0 || b < a {
		t.Fatalf("MonotonicUsec: %d then %d", a, b)
	}
}

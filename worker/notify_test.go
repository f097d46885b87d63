//go:build linux

package worker

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// notifyReceiver binds a unix datagram socket named name (a path or "@abstract") with
// SO_PASSCRED, as a service manager's, and points NOTIFY_SOCKET at it until the test ends.
func notifyReceiver(t *testing.T, name string) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		t.Fatal(err)
	}
	// Receive with a timeout derived from the test's deadline; a timeout fails the test, and
	// TestNotifyErrors relies on it never being reached.
	tv := unix.NsecToTimeval(max(time.Until(deadline(t)).Nanoseconds(), 1))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(envNotifySocket, name)
	return fd
}

// receive reads one datagram and the sender's credentials, which the kernel adds.
func receive(t *testing.T, fd int) (string, *unix.Ucred) {
	t.Helper()
	buf := make([]byte, 2*notifyMax)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred))
	var n, oobn, flags int
	var err error
	for {
		n, oobn, flags, _, err = unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		t.Fatalf("recvmsg: %v", err)
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		t.Fatalf("recvmsg: flags %#x", flags)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		t.Fatalf("control messages %v, %v; want credentials", msgs, err)
	}
	cred, err := unix.ParseUnixCredentials(&msgs[0])
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), cred
}

// checkReceived fails unless the next datagram on fd is want, from this process.
func checkReceived(t *testing.T, fd int, want string) {
	t.Helper()
	got, cred := receive(t, fd)
	if got != want {
		t.Errorf("received %.60q, want %.60q", got, want)
	}
	if int(cred.Pid) != os.Getpid() || int(cred.Uid) != os.Getuid() {
		t.Errorf("sender pid %d uid %d, want this process: pid %d uid %d", cred.Pid, cred.Uid, os.Getpid(), os.Getuid())
	}
}

// notifyName is a fresh abstract socket name.
func notifyName(t *testing.T) string {
	return "@handoff-listener-test-" + strconv.Itoa(os.Getpid()) + "-" + strings.ReplaceAll(t.Name(), "/", "-")
}

func TestNotify(t *testing.T) {
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
	}{
		{"abstract", notifyName},
		{"path", func(t *testing.T) string { return filepath.Join(t.TempDir(), "notify.sock") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFdLeak(t)
			addr := tc.addr(t)
			fd := notifyReceiver(t, addr)
			state := "READY=1\nSTATUS=serving"
			if sent, err := Notify(state); !sent || err != nil {
				t.Fatalf("Notify(%q) = %t, %v; want true, nil", state, sent, err)
			}
			checkReceived(t, fd, state)
			if err := Ready(); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, fd, "READY=1")
			if err := Stopping(); err != nil {
				t.Fatal(err)
			}
			checkReceived(t, fd, "STOPPING=1")
			// The largest datagram a service manager reads goes through whole.
			big := "STATUS=" + strings.Repeat("x", notifyMax-len("STATUS="))
			if sent, err := Notify(big); !sent || err != nil {
				t.Fatalf("Notify of %d bytes = %t, %v", len(big), sent, err)
			}
			checkReceived(t, fd, big)
			if got := os.Getenv(envNotifySocket); got != addr {
				t.Errorf("NOTIFY_SOCKET is %q after Notify, want it kept: %q", got, addr)
			}
		})
	}
}

func TestNotifyUnset(t *testing.T) {
	checkFdLeak(t)
	t.Setenv(envNotifySocket, "") // restored when the test ends
	for _, unset := range []bool{true, false} {
		if unset {
			os.Unsetenv(envNotifySocket)
		}
		if sent, err := Notify("READY=1"); sent || err != nil {
			t.Errorf("unset %t: Notify = %t, %v; want false, nil", unset, sent, err)
		}
		if err := Ready(); err != nil {
			t.Errorf("unset %t: Ready: %v", unset, err)
		}
		if err := Stopping(); err != nil {
			t.Errorf("unset %t: Stopping: %v", unset, err)
		}
	}
}

func TestNotifyErrors(t *testing.T) {
	checkFdLeak(t)
	dir := t.TempDir()
	stream := filepath.Join(dir, "stream.sock")
	sfd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sfd)
	if err := unix.Bind(sfd, &unix.SockaddrUnix{Name: stream}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(sfd, 1); err != nil {
		t.Fatal(err)
	}
	long := "/" + strings.Repeat("d", maxSockaddrPath)
	for _, tc := range []struct {
		sock string
		is   error // nil: any error
		want string
	}{
		{filepath.Join(dir, "missing", "notify.sock"), syscall.ENOENT, filepath.Join(dir, "missing", "notify.sock")},
		{"@handoff-listener-test-" + strconv.Itoa(os.Getpid()) + "-nobody", syscall.ECONNREFUSED, "-nobody"},
		{stream, syscall.EPROTOTYPE, stream},
		{dir, syscall.ECONNREFUSED, dir}, // a directory, not a socket
		{"notify.sock", nil, `NOTIFY_SOCKET="notify.sock": want an absolute path or @name`},
		{"@", nil, `NOTIFY_SOCKET="@"`},
		{"vsock:2:1234", nil, `NOTIFY_SOCKET="vsock:2:1234"`},
		{long, nil, "at most 107 bytes"},
	} {
		t.Setenv(envNotifySocket, tc.sock)
		sent, err := Notify("READY=1")
		if sent || err == nil {
			t.Errorf("NOTIFY_SOCKET=%.40q: Notify = %t, %v; want an error", tc.sock, sent, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("NOTIFY_SOCKET=%.40q: error %q, want one holding %q and wrapping %v", tc.sock, err, tc.want, tc.is)
		}
		if err := Ready(); err == nil {
			t.Errorf("NOTIFY_SOCKET=%.40q: Ready: no error", tc.sock)
		}
	}

	// Bad states are refused before anything is sent: the first datagram the receiver gets is
	// the valid one sent after them.
	fd := notifyReceiver(t, notifyName(t))
	for _, tc := range []struct{ state, want string }{
		{"", "empty state"},
		{strings.Repeat("x", notifyMax+1), "state of 4097 bytes, more than 4096"},
		{"READY=1\x00", "NUL"},
	} {
		sent, err := Notify(tc.state)
		if sent || err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), notifyName(t)) {
			t.Errorf("Notify(%.20q) = %t, %v; want an error naming the socket and saying %q", tc.state, sent, err, tc.want)
		}
	}
	if _, err := Notify("STATUS=valid"); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, fd, "STATUS=valid")
}

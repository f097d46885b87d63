package acceptq

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
)

// TestAccepted: a process holds a connection accepted on a socket once it
// accepted one, not while the connection waits in the queue, for TCP and
// unix sockets.
func TestAccepted(t *testing.T) {
	for _, a := range []listener.Addr{
		{Network: "tcp", Address: "127.0.0.1:0"},
		{Network: "unix", Address: filepath.Join(t.TempDir(), "s.sock")},
	} {
		sock, err := listener.Listen(a)
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		ln, err := listenerOf(sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		c, err := net.Dial(sock.Addr().Network(), sock.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		self := []int{os.Getpid()}
		if got, err := Accepted(self, []*listener.Socket{sock}); got || err != nil {
			t.Errorf("%s: Accepted before accept = %v, %v; want false (the client's end is no accepted connection)", a, got, err)
		}
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got, err := Accepted(self, []*listener.Socket{sock}); !got || err != nil {
			t.Errorf("%s: Accepted after accept = %v, %v; want true", a, got, err)
		}
		if got, _ := Accepted([]int{os.Getppid()}, []*listener.Socket{sock}); got {
			t.Errorf("%s: Accepted of another process = true", a)
		}
	}
}

// listenerOf is a net.Listener on a duplicate of sock's descriptor.
func listenerOf(sock *listener.Socket) (net.Listener, error) {
	var ln net.Listener
	var err error
	cerr := sock.Control(func(fd uintptr) {
		var dup int
		if dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0); err != nil {
			return
		}
		f := os.NewFile(uintptr(dup), "listener")
		defer f.Close()
		ln, err = net.FileListener(f)
	})
	if cerr != nil {
		return nil, cerr
	}
	return ln, err
}

// TestTreeAccepted: a connection held by a descendant of the process, and
// not by the process itself, counts for TreeAccepted, not for Accepted.
func TestTreeAccepted(t *testing.T) {
	sock, err := listener.Listen(listener.Addr{Network: "tcp", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	ln, err := listenerOf(sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	f, err := s.(*net.TCPConn).File()
	s.Close()
	if err != nil {
		t.Fatal(err)
	}
	// sh hands the connection (fd 3) to a background child, closes its
	// own, and says so.
	cmd := exec.Command("sh", "-c", "sleep 600 & exec 3<&-; echo ok; wait")
	cmd.ExtraFiles = []*os.File{f}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // so that the sleep goes with it
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	defer func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "ok\n" {
		t.Fatalf("sh said %q, %v", line, err)
	}
	socks := []*listener.Socket{sock}
	if got, err := Accepted([]int{cmd.Process.Pid}, socks); got || err != nil {
		t.Errorf("Accepted of sh alone = %v, %v; want false", got, err)
	}
	if got, err := TreeAccepted(cmd.Process.Pid, socks); !got || err != nil {
		t.Errorf("TreeAccepted of sh = %v, %v; want true (its child holds the connection)", got, err)
	}
}

package endpoint

import (
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
)

// socketListener returns a net.Listener on a duplicate of sock's
// descriptor: closing it leaves sock, and the connections queued on it,
// as they are.
func socketListener(sock *listener.Socket) (net.Listener, error) {
	var dup int
	var err error
	if cerr := sock.Control(func(fd uintptr) {
		dup, err = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); cerr != nil {
		return nil, cerr
	}
	if err != nil {
		return nil, os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err)
	}
	f := os.NewFile(uintptr(dup), sock.Name())
	defer f.Close()
	return net.FileListener(f)
}

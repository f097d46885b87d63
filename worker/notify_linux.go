package worker

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// sendNotify sends state to sock as one datagram from a new socket, closed at once.
func sendNotify(sock, state string) error {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("worker: notify %s: %w", sock, os.NewSyscallError("socket", err))
	}
	defer unix.Close(fd)
	// SockaddrUnix turns a leading '@' into the NUL of an abstract name.
	addr := &unix.SockaddrUnix{Name: sock}
	for {
		err = unix.Sendto(fd, []byte(state), unix.MSG_NOSIGNAL, addr)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("worker: notify %s: %w", sock, os.NewSyscallError("sendto", err))
	}
	return nil
}

package connpass

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// CheckConn returns nil if fd is a connected stream socket of TCP (IPv4 or
// IPv6) or of the unix domain, not listening: the only descriptors a
// worker serves as a client connection. Otherwise the error says what fd
// is.
func CheckConn(fd int) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("connpass: fd %d is not a socket: %w", fd, os.NewSyscallError("getsockopt", err))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fmt.Errorf("connpass: fd %d: %w", fd, os.NewSyscallError("getsockopt", err))
	}
	switch {
	case dom != unix.AF_INET && dom != unix.AF_INET6 && dom != unix.AF_UNIX:
		return fmt.Errorf("connpass: fd %d is a socket of domain %d, want TCP or unix", fd, dom)
	case typ != unix.SOCK_STREAM:
		return fmt.Errorf("connpass: fd %d is a socket of type %d, want a stream", fd, typ)
	}
	if acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil {
		return fmt.Errorf("connpass: fd %d: %w", fd, os.NewSyscallError("getsockopt", err))
	} else if acc != 0 {
		return fmt.Errorf("connpass: fd %d is a listening socket, want a connection", fd)
	}
	if _, err := unix.Getpeername(fd); err != nil {
		return fmt.Errorf("connpass: fd %d is not connected: %w", fd, os.NewSyscallError("getpeername", err))
	}
	if dom != unix.AF_UNIX {
		proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
		if err != nil {
			return fmt.Errorf("connpass: fd %d: %w", fd, os.NewSyscallError("getsockopt", err))
		}
		if proto != unix.IPPROTO_TCP {
			return fmt.Errorf("connpass: fd %d is a stream socket of protocol %d, want TCP", fd, proto)
		}
	}
	return nil
}

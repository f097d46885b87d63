package listener

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

func listen(a Addr, o options) (*Socket, error) {
	if a.Network == "unix" && a.Address[0] != '@' {
		if err := clearStale(a); err != nil {
			return nil, err
		}
	}
	var lc net.ListenConfig
	if o.reusePort {
		lc.Control = func(_, _ string, c syscall.RawConn) error {
			var err error
			if cerr := c.Control(func(fd uintptr) {
				err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); cerr != nil {
				return cerr
			}
			return os.NewSyscallError("setsockopt SO_REUSEPORT", err)
		}
	}
	ln, err := lc.Listen(context.Background(), a.Network, a.Address)
	if err != nil {
		return nil, listenError(a, err)
	}
	// Package net removes a unix socket file it created when the listener closes. Keep that
	// for the failure paths below, which should leave no file; on success the file must stay.
	ok := false
	defer func() {
		if ul, isUnix := ln.(*net.UnixListener); isUnix {
			ul.SetUnlinkOnClose(!ok)
		}
		ln.Close()
	}()

	rc, err := ln.(syscall.Conn).SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("listener: listen %s: %w", a, err)
	}
	var fd int
	var ferr error
	err = rc.Control(func(lfd uintptr) {
		if o.setBacklog {
			// Calling listen again on a listening socket only updates its backlog.
			if err := unix.Listen(int(lfd), o.backlog); err != nil {
				ferr = os.NewSyscallError("listen", err)
				return
			}
		}
		// The duplicate shares the open file description, which package net made
		// non-blocking; F_DUPFD_CLOEXEC makes the new descriptor close-on-exec.
		fd, ferr = unix.FcntlInt(lfd, unix.F_DUPFD_CLOEXEC, 0)
		ferr = os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", ferr)
	})
	if err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("listener: listen %s: %w", a, err)
	}
	ok = true
	return &Socket{name: nameOrDefault(a.Name), addr: ln.Addr(), fd: fd, open: true}, nil
}

func listenError(a Addr, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("%w: %s: %w", ErrInUse, a, err)
	case errors.Is(err, syscall.EACCES) && a.Network != "unix":
		return fmt.Errorf("listener: listen %s: %w (a port below net.ipv4.ip_unprivileged_port_start needs CAP_NET_BIND_SERVICE)", a, err)
	default:
		return fmt.Errorf("listener: listen %s: %w", a, err)
	}
}

// clearStale makes way for binding a's path: nothing there is fine; a socket file nobody
// listens on is removed; a live socket or any other kind of file is an error.
func clearStale(a Addr) error {
	path := a.Address
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener: listen %s: %w", a, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("listener: listen %s: %s exists and is not a socket (mode %s); not removing it", a, path, fi.Mode())
	}
	live, err := probeUnix(path)
	if err != nil {
		return fmt.Errorf("listener: listen %s: probing the existing socket: %w", a, err)
	}
	if live {
		return fmt.Errorf("%w: %s: a process is listening on %s", ErrInUse, a, path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listener: listen %s: removing stale socket: %w", a, err)
	}
	return nil
}

// unlink removes the socket file at a's path if it is a socket nobody listens on.
func unlink(a Addr) error {
	fi, err := os.Lstat(a.Address)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("listener: unlink %s: %w", a, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return nil
	}
	if live, err := probeUnix(a.Address); err != nil {
		return fmt.Errorf("listener: unlink %s: %w", a, err)
	} else if live {
		return nil
	}
	if err := os.Remove(a.Address); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("listener: unlink %s: %w", a, err)
	}
	return nil
}

// probeUnix reports whether a process listens on the unix socket at path, by connecting to it.
// A connection refused means the file outlived its socket.
func probeUnix(path string) (live bool, err error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return false, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	for {
		err = unix.Connect(fd, &unix.SockaddrUnix{Name: path})
		if err != unix.EINTR {
			break
		}
	}
	switch err {
	case nil, unix.EAGAIN, unix.EINPROGRESS:
		return true, nil // EAGAIN: a listener whose queue is full
	case unix.EPROTOTYPE:
		return true, nil // a bound socket of another type (datagram, seqpacket)
	case unix.ECONNREFUSED, unix.ENOENT:
		return false, nil
	default:
		return false, os.NewSyscallError("connect", err)
	}
}

func adopt() ([]*Socket, error) {
	n, names, err := takeListenEnv()
	if err != nil {
		return nil, err
	}
	for i := range n {
		if err := setCloexec(firstFd + i); err != nil {
			return nil, err
		}
	}
	socks := make([]*Socket, n)
	for i := range socks {
		s, err := fromFd(firstFd+i, names[i])
		if err != nil {
			return nil, err
		}
		socks[i] = s
	}
	return socks, nil
}

// takeListenEnv parses the socket-activation variables for this process and removes them from
// the environment, whatever they hold, as sd_listen_fds(1) does: they are meant for this process
// and no other, so they must not reach its children.
func takeListenEnv() (int, []string, error) {
	n, names, err := parseListenEnv(os.Getpid(), os.Getenv(envFds), os.Getenv(envNames), os.Getenv(envPid))
	for _, k := range []string{envFds, envNames, envPid} {
		os.Unsetenv(k)
	}
	return n, names, err
}

func fromFd(fd int, name string) (*Socket, error) {
	if err := checkListening(fd, name); err != nil {
		return nil, err
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fdError(fd, name, os.NewSyscallError("getsockname", err))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fdError(fd, name, os.NewSyscallError("getsockopt SO_TYPE", err))
	}
	addr, err := netAddr(sa, typ)
	if err != nil {
		return nil, fdError(fd, name, err)
	}
	if err := setCloexec(fd); err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		return nil, fdError(fd, name, os.NewSyscallError("fcntl F_SETFL O_NONBLOCK", err))
	}
	return &Socket{name: name, addr: addr, fd: fd, open: true}, nil
}

// checkListening checks that fd is a socket in the listening state.
func checkListening(fd int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fdError(fd, name, os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fdError(fd, name, errors.New("not a socket"))
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return fdError(fd, name, os.NewSyscallError("getsockopt SO_ACCEPTCONN", err))
	}
	if acc == 0 {
		return fdError(fd, name, errors.New("a socket, but not listening"))
	}
	return nil
}

func setCloexec(fd int) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return fdError(fd, "", os.NewSyscallError("fcntl F_SETFD FD_CLOEXEC", err))
	}
	return nil
}

func fdError(fd int, name string, err error) error {
	if name == "" {
		return fmt.Errorf("listener: fd %d: %w", fd, err)
	}
	return fmt.Errorf("listener: fd %d (%s): %w", fd, quote(name), err)
}

// netAddr converts a listening socket's address to the net.Addr package net would report.
func netAddr(sa unix.Sockaddr, sotype int) (net.Addr, error) {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		if sotype != unix.SOCK_STREAM {
			break
		}
		return &net.TCPAddr{IP: net.IPv4(sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3]), Port: sa.Port}, nil
	case *unix.SockaddrInet6:
		if sotype != unix.SOCK_STREAM {
			break
		}
		return &net.TCPAddr{IP: net.IP(append([]byte(nil), sa.Addr[:]...)), Port: sa.Port, Zone: zoneName(sa.ZoneId)}, nil
	case *unix.SockaddrUnix:
		switch sotype {
		case unix.SOCK_STREAM:
			return &net.UnixAddr{Name: sa.Name, Net: "unix"}, nil
		case unix.SOCK_SEQPACKET:
			return &net.UnixAddr{Name: sa.Name, Net: "unixpacket"}, nil
		}
	default:
		return nil, fmt.Errorf("unsupported address family (%T)", sa)
	}
	return nil, fmt.Errorf("unsupported socket type %d", sotype)
}

func zoneName(id uint32) string {
	if id == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}

func closeFd(fd int) error {
	return os.NewSyscallError("close", unix.Close(fd))
}

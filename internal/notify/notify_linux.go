package notify

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// scmMaxFd is the kernel's SCM_MAX_FD: the most descriptors one datagram carries.
	scmMaxFd = 253
	// maxAncestors bounds the walk up the ppid chain in DescendantOf.
	maxAncestors = 64
)

// sockaddr is what the recvmsg seam returns besides the datagram.
type sockaddr = unix.Sockaddr

// Open binds a new unixgram socket in the abstract namespace, named
// "@handoff-<getpid>-<16 random hex>", with SO_PASSCRED set before binding so that every datagram
// carries its sender's credentials. The socket is close-on-exec and non-blocking. An abstract
// socket leaves nothing on disk, and disappears with its last descriptor.
func Open() (*Socket, error) {
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, fmt.Errorf("notify socket: %w", err)
	}
	name := "@handoff-" + strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(rnd[:])
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("notify socket: %w", os.NewSyscallError("socket", err))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket: %w", os.NewSyscallError("setsockopt SO_PASSCRED", err))
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: name}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("notify socket %s: %w", name, os.NewSyscallError("bind", err))
	}
	return wrap(fd, name)
}

// FromFd takes over fd, an inherited notify socket: a bound unix datagram socket, e.g.
// handed across an in-place re-exec of the supervisor. It reads the name back with getsockname,
// sets SO_PASSCRED, close-on-exec and non-blocking. Datagrams queued before SO_PASSCRED was set
// carry no sender and are dropped (counted as NoCredentials). On success fd belongs to the
// Socket (which may move it to another number); on failure it is left open.
func FromFd(fd int) (*Socket, error) {
	if fd < 0 {
		return nil, fmt.Errorf("notify socket: fd %d: negative descriptor", fd)
	}
	fail := func(err error) (*Socket, error) {
		return nil, fmt.Errorf("notify socket: fd %d: %w", fd, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fail(os.NewSyscallError("fstat", err))
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fail(errors.New("not a socket"))
	}
	domain, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fail(os.NewSyscallError("getsockopt SO_DOMAIN", err))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return fail(os.NewSyscallError("getsockopt SO_TYPE", err))
	}
	if domain != unix.AF_UNIX || typ != unix.SOCK_DGRAM {
		return fail(fmt.Errorf("not a unix datagram socket (domain %d, type %d)", domain, typ))
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return fail(os.NewSyscallError("getsockname", err))
	}
	// An unbound socket reads back as "@": x/sys turns the leading NUL of an empty name into '@'.
	ua, ok := sa.(*unix.SockaddrUnix)
	if !ok || ua.Name == "" || ua.Name == "@" {
		return fail(errors.New("socket not bound to a name"))
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return fail(os.NewSyscallError("setsockopt SO_PASSCRED", err))
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		return fail(os.NewSyscallError("fcntl F_SETFL O_NONBLOCK", err))
	}
	// Wrap a duplicate, so that fd stays open if wrapping fails.
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return fail(os.NewSyscallError("fcntl F_DUPFD_CLOEXEC", err))
	}
	n, err := wrap(dup, ua.Name)
	if err != nil {
		return nil, err
	}
	unix.Close(fd)
	return n, nil
}

// wrap makes a Socket of fd, a non-blocking unix datagram socket, read through
// the netpoller. It takes fd over: fd is closed, whatever the outcome.
func wrap(fd int, name string) (*Socket, error) {
	// net.FileConn duplicates the descriptor (close-on-exec, non-blocking) and registers the copy
	// with the netpoller. It calls f.Fd(), which makes the open file description blocking, and
	// then makes it non-blocking again; only the supervisor holds the socket.
	f := os.NewFile(uintptr(fd), name)
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("notify socket %s: %w", name, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("notify socket %s: %T is not a unix socket", name, c)
	}
	return &Socket{name: name, conn: uc}, nil
}

// Serve reads datagrams until Close, calling deliver for each valid one, synchronously on Serve's
// goroutine: while deliver blocks, datagrams wait in the socket's queue, and once that is full
// senders block. Datagrams without credentials, oversized or unparsable are counted (see Dropped)
// and dropped. Every descriptor a datagram carries is closed. Call Serve once; it returns nil
// after Close; a failed read is counted (ReadErrors) and reading goes on.
func (n *Socket) Serve(deliver func(Msg)) error {
	if n.serving.Swap(true) {
		return fmt.Errorf("notify socket %s: Serve called twice", n.name)
	}
	rc, err := n.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("notify socket %s: %w", n.name, err)
	}
	buf := make([]byte, maxDatagram) // a larger datagram is cut short, with MSG_TRUNC
	// Room for the credentials and the most descriptors a datagram can carry, so that control
	// data is never cut short (MSG_CTRUNC).
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(scmMaxFd*4))
	recvmsg := n.recvmsg
	if recvmsg == nil {
		recvmsg = unix.Recvmsg
	}
	errs := 0 // consecutive read errors
	for {
		var nr, oobn, flags int
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				// MSG_CMSG_CLOEXEC: received descriptors must not leak into a concurrent spawn
				// before they are closed.
				nr, oobn, flags, _, rerr = recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN // EAGAIN: wait in the netpoller
				}
			}
		})
		switch {
		case errors.Is(err, net.ErrClosed):
			return nil
		case err != nil:
			return fmt.Errorf("notify socket %s: %w", n.name, err)
		case rerr != nil:
			// A failed read loses at most that datagram: ending here would
			// leave every later worker unready for good.
			n.readErrors.Add(1)
			errs++
			time.Sleep(min(time.Duration(errs)*time.Millisecond, 100*time.Millisecond))
			continue
		}
		errs = 0
		if m, ok := n.accept(buf[:nr], oob[:oobn], flags); ok {
			deliver(m)
		}
	}
}

// accept closes the descriptors a datagram carried and parses it, or counts why it is dropped.
func (n *Socket) accept(payload, oob []byte, flags int) (Msg, bool) {
	pid := n.control(oob)
	switch {
	case flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0:
		n.oversized.Add(1)
	case pid <= 0:
		n.noCredentials.Add(1)
	default:
		m, err := Parse(payload)
		if err != nil {
			n.malformed.Add(1)
			return Msg{}, false
		}
		m.Pid = pid
		return m, true
	}
	return Msg{}, false
}

// control closes every descriptor in the control data and returns the sender's pid from
// SCM_CREDENTIALS: 0 if there is none, or if the datagram was queued before SO_PASSCRED was set.
func (n *Socket) control(oob []byte) (pid int) {
	for len(oob) >= unix.CmsgLen(0) {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break // the kernel writes well-formed control data: not reached
		}
		oob = rest
		m := unix.SocketControlMessage{Header: h, Data: data}
		if h.Level != unix.SOL_SOCKET {
			continue
		}
		switch h.Type {
		case unix.SCM_RIGHTS:
			fds, _ := unix.ParseUnixRights(&m)
			for _, fd := range fds {
				unix.Close(fd)
				n.fdsClosed.Add(1)
			}
		case unix.SCM_CREDENTIALS:
			if cred, err := unix.ParseUnixCredentials(&m); err == nil {
				pid = int(cred.Pid)
			}
		}
	}
	return pid
}

// DescendantOf walks up from pid through its ancestors, reading the parent of each from
// /proc/<pid>/stat, and returns the first (pid itself included) for which isWorker is true. It
// gives up after 64 ancestors, at pid 1 or a parent outside the pid namespace (0), or when a
// process is gone. Pids can be reused: an answer is only as good as the moment it was read, which
// is the best a receiver of notify messages can do (systemd does the same for NotifyAccess=all).
func DescendantOf(pid int, isWorker func(pid int) bool) (worker int, ok bool) {
	for range maxAncestors + 1 {
		if pid <= 0 {
			return 0, false
		}
		if isWorker(pid) {
			return pid, true
		}
		if pid == 1 {
			return 0, false
		}
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return 0, false
		}
		if pid, err = statPPid(stat); err != nil {
			return 0, false
		}
	}
	return 0, false
}

// MonotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it
// with RELOADING=1 (MONOTONIC_USEC); 0 if the clock cannot be read.
func MonotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}

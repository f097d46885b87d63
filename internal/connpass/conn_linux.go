package connpass

import (
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// NewConn makes a Conn of fd, one end of a socket pair, which it owns from
// then on (closed on error too). It sets fd non-blocking and close-on-exec,
// and refuses anything but an AF_UNIX SOCK_SEQPACKET socket.
func NewConn(fd int, name string) (*Conn, error) {
	if err := checkPair(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connpass: %s (fd %d): %w", name, fd, err)
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("connpass: %s (fd %d): %w", name, fd, os.NewSyscallError("fcntl", err))
	}
	// A non-blocking descriptor makes a pollable File: Recv and Send wait
	// in the netpoller, and the deadlines work.
	return &Conn{f: os.NewFile(uintptr(fd), name)}, nil
}

// checkPair says what fd is if it is not a unix SOCK_SEQPACKET socket.
func checkPair(fd int) error {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return fmt.Errorf("not a socket: %w", os.NewSyscallError("getsockopt", err))
	}
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return os.NewSyscallError("getsockopt", err)
	}
	if dom != unix.AF_UNIX || typ != unix.SOCK_SEQPACKET {
		return fmt.Errorf("a socket of domain %d and type %d, want a unix SOCK_SEQPACKET socket", dom, typ)
	}
	return nil
}

// Pair returns a new socket pair: local, this process's end, and remote,
// the end to pass to a child (ExtraFiles), close-on-exec here and blocking
// until the child makes a Conn of it.
func Pair() (local *Conn, remote *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("connpass: %w", os.NewSyscallError("socketpair", err))
	}
	local, err = NewConn(fds[0], "handover")
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return local, os.NewFile(uintptr(fds[1]), "handover"), nil
}

// Fd returns c's descriptor number, without switching it to blocking mode
// as os.File.Fd would; the descriptor stays c's.
func (c *Conn) Fd() (int, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("connpass: %w", err)
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd = int(s) }); err != nil {
		return -1, fmt.Errorf("connpass: %w", err)
	}
	return fd, nil
}

// Send sends m, with m.Fd attached when m's kind carries one. It waits
// while the peer's queue is full (see SetWriteDeadline). It never closes
// m.Fd: the kernel holds its own reference while the message is queued.
func (c *Conn) Send(m Msg) error {
	b, err := m.Encode()
	if err != nil {
		return err
	}
	var oob []byte
	switch {
	case m.Kind.carriesFd() && m.Fd < 0:
		return fmt.Errorf("connpass: %v message without a descriptor", m.Kind)
	case m.Kind.carriesFd():
		oob = unix.UnixRights(m.Fd)
	case m.Fd >= 0:
		return fmt.Errorf("connpass: %v message with a descriptor", m.Kind)
	}
	rc, err := c.f.SyscallConn()
	if err != nil {
		return fmt.Errorf("connpass: %w", err)
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendmsg(int(fd), b, oob, nil, unix.MSG_NOSIGNAL)
		return serr != unix.EAGAIN && serr != unix.EINTR
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		if errors.Is(err, unix.EPIPE) || errors.Is(err, unix.ECONNRESET) {
			return fmt.Errorf("connpass: send %v: the peer is gone: %w", m.Kind, io.ErrClosedPipe)
		}
		return fmt.Errorf("connpass: send %v: %w", m.Kind, wrapSys("sendmsg", err))
	}
	return nil
}

// wrapSys wraps a raw errno as a syscall error; errors from the poller
// (deadline, closed file) are left as they are.
func wrapSys(call string, err error) error {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return os.NewSyscallError(call, err)
	}
	return err
}

// maxFds is how many descriptors Recv makes room for: one is expected, the
// room for more lets it see and close what a confused peer sent.
const maxFds = 4

// Recv waits for the next message. It returns io.EOF when the peer's end
// is closed and every message it sent has been read: a peer that closed
// (or died) with messages of this end unread makes the kernel report
// ECONNRESET once, ahead of the messages still queued; Recv reads past it. A received descriptor is close-on-exec and the caller's to
// close. A message that cannot be decoded, or whose descriptors do not
// match its kind, is consumed: its descriptors are closed and the error
// says what was wrong; the next Recv reads the next message.
func (c *Conn) Recv() (Msg, error) {
	rc, err := c.f.SyscallConn()
	if err != nil {
		return Msg{Fd: -1}, fmt.Errorf("connpass: %w", err)
	}
	buf := make([]byte, MaxMsg+1)
	oob := make([]byte, unix.CmsgSpace(maxFds*4))
	var n, oobn, flags int
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if rerr == unix.ECONNRESET {
			// The peer closed with messages of ours unread. The kernel
			// reports that once, before the messages the peer sent,
			// which are still queued: read on (an EOF follows them).
			n, oobn, flags, _, rerr = unix.Recvmsg(int(fd), buf, oob, unix.MSG_CMSG_CLOEXEC)
		}
		return rerr != unix.EAGAIN && rerr != unix.EINTR
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		if errors.Is(err, unix.ECONNRESET) {
			return Msg{Fd: -1}, io.EOF
		}
		return Msg{Fd: -1}, fmt.Errorf("connpass: receive: %w", wrapSys("recvmsg", err))
	}
	fds, ferr := rights(oob[:oobn])
	if n == 0 && oobn == 0 {
		return Msg{Fd: -1}, io.EOF // SOCK_SEQPACKET: the peer closed its end
	}
	m, err := Decode(buf[:min(n, len(buf))])
	switch {
	case flags&unix.MSG_TRUNC != 0:
		err = fmt.Errorf("connpass: a message longer than %d bytes", MaxMsg)
	case flags&unix.MSG_CTRUNC != 0:
		err = fmt.Errorf("connpass: %v message with more than %d descriptors", m.Kind, maxFds)
	case ferr != nil:
		err = ferr
	case err != nil:
	case m.Kind.carriesFd() && len(fds) != 1:
		err = fmt.Errorf("connpass: %v message with %d descriptors, want 1", m.Kind, len(fds))
	case !m.Kind.carriesFd() && len(fds) != 0:
		err = fmt.Errorf("connpass: %v message with %d descriptors, want none", m.Kind, len(fds))
	}
	if err != nil {
		for _, fd := range fds {
			unix.Close(fd)
		}
		m.Fd = -1
		return m, err
	}
	if len(fds) == 1 {
		m.Fd = fds[0]
	}
	return m, nil
}

// rights returns the descriptors in the control messages, closing none.
func rights(oob []byte) ([]int, error) {
	if len(oob) == 0 {
		return nil, nil
	}
	cmsgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, fmt.Errorf("connpass: control message: %w", err)
	}
	var fds []int
	var bad error
	for _, cm := range cmsgs {
		if cm.Header.Level != unix.SOL_SOCKET || cm.Header.Type != unix.SCM_RIGHTS {
			bad = fmt.Errorf("connpass: control message of level %d type %d, want SCM_RIGHTS", cm.Header.Level, cm.Header.Type)
			continue
		}
		got, err := unix.ParseUnixRights(&cm)
		if err != nil {
			bad = fmt.Errorf("connpass: SCM_RIGHTS: %w", err)
			continue
		}
		fds = append(fds, got...)
	}
	return fds, bad
}

// queued returns how many bytes of messages wait in c's receive queue.
func (c *Conn) queued() (int, error) {
	fd, err := c.Fd()
	if err != nil {
		return 0, err
	}
	n, err := unix.IoctlGetInt(fd, unix.SIOCINQ)
	if err != nil {
		return 0, os.NewSyscallError("ioctl SIOCINQ", err)
	}
	return n, nil
}

func closeFd(fd int) { unix.Close(fd) }

func setCloexec(fd int) { unix.CloseOnExec(fd) }

package acceptq

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
)

// Sample asks the kernel for sock's accept queue: TCP_INFO for a TCP
// socket (for a listening socket, tcpi_unacked is the queue's length and
// tcpi_sacked its backlog), sock_diag for a unix one (UDIAG_SHOW_RQLEN:
// the same two numbers). A closed socket, or a kernel without the answer, returns an error and
// a Queue that is not Known.
func Sample(sock *listener.Socket) (Queue, error) {
	var q Queue
	var err error
	cerr := sock.Control(func(fd uintptr) {
		switch sock.Addr().(type) {
		case *net.TCPAddr:
			var ti *unix.TCPInfo
			ti, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
			if err != nil {
				err = os.NewSyscallError("getsockopt TCP_INFO", err)
				return
			}
			q.Len, q.Max, q.Known = ti.Unacked, ti.Sacked, true
		case *net.UnixAddr:
			var st unix.Stat_t
			if err = unix.Fstat(int(fd), &st); err != nil {
				err = os.NewSyscallError("fstat", err)
				return
			}
			q.Len, q.Max, err = unixQueue(uint32(st.Ino))
			q.Known = err == nil
		default:
			err = fmt.Errorf("%v: no accept queue to sample", sock.Addr())
		}
	})
	if cerr != nil {
		return Queue{}, fmt.Errorf("accept queue of %s: %w", sock.Name(), cerr)
	}
	if err != nil {
		return Queue{}, fmt.Errorf("accept queue of %s: %w", sock.Name(), err)
	}
	return q, nil
}

// unixQueue asks sock_diag for the accept queue of the unix socket with
// inode ino.
func unixQueue(ino uint32) (n, max uint32, err error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, 0, os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	const (
		hdrLen       = 16 // struct nlmsghdr
		reqLen       = 24 // struct unix_diag_req
		msgLen       = 16 // struct unix_diag_msg
		showRqlen    = 0x10
		attrRqlen    = 4 // UNIX_DIAG_RQLEN
		tcpListen    = 10
		noCookie     = ^uint32(0)
		sockDiagByFm = unix.SOCK_DIAG_BY_FAMILY
	)
	b := make([]byte, hdrLen+reqLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFm)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 1) // seq
	r := b[hdrLen:]
	r[0] = unix.AF_UNIX
	ne.PutUint32(r[4:], 1<<tcpListen)
	ne.PutUint32(r[8:], ino)
	ne.PutUint32(r[12:], showRqlen)
	ne.PutUint32(r[16:], noCookie)
	ne.PutUint32(r[20:], noCookie)
	if err := unix.Sendto(fd, b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return 0, 0, os.NewSyscallError("sendto", err)
	}
	buf := make([]byte, 4096)
	m, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return 0, 0, os.NewSyscallError("recvfrom", err)
	}
	buf = buf[:m]
	if len(buf) < hdrLen {
		return 0, 0, errors.New("sock_diag: short answer")
	}
	if typ := ne.Uint16(buf[4:]); typ == unix.NLMSG_ERROR {
		if len(buf) >= hdrLen+4 {
			if e := int32(ne.Uint32(buf[hdrLen:])); e != 0 {
				return 0, 0, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			}
		}
		return 0, 0, errors.New("sock_diag: error answer")
	}
	l := min(int(ne.Uint32(buf[0:])), len(buf))
	if l < hdrLen+msgLen {
		return 0, 0, errors.New("sock_diag: short message")
	}
	for a := buf[hdrLen+msgLen : l]; len(a) >= 4; {
		alen := int(ne.Uint16(a[0:]))
		if alen < 4 || alen > len(a) {
			break
		}
		if ne.Uint16(a[2:]) == attrRqlen && alen >= 12 {
			return ne.Uint32(a[4:]), ne.Uint32(a[8:]), nil
		}
		a = a[min((alen+3)&^3, len(a)):]
	}
	return 0, 0, errors.New("sock_diag: no UNIX_DIAG_RQLEN in the answer")
}

package supervisor

import "github.com/handoff-dev/handoff/internal/notify"

// NotifyDrops counts the notify datagrams the supervisor dropped, by reason, and the file
// descriptors that came with datagrams and were closed (Stats.NotifyDropped).
type NotifyDrops struct {
	// Foreign: datagrams from a process that is not a worker (nor, with WithNotifyAccessAll, a
	// worker's descendant).
	Foreign uint64
	// NoCredentials: datagrams without the sender's pid. The kernel attaches it to every
	// datagram once SO_PASSCRED is set, which the supervisor does before binding, so this
	// counts only datagrams queued on an inherited socket before SO_PASSCRED was set, and
	// senders whose pid this process cannot see (another pid namespace: the kernel says 0).
	NoCredentials uint64
	// Oversized: payloads over 4096 bytes (cut short by the kernel: MSG_TRUNC), and datagrams
	// whose control data was cut short (MSG_CTRUNC), as systemd drops them. The buffer holds the
	// credentials and the most descriptors one datagram can carry, so that happens only when
	// this process is out of descriptors (RLIMIT_NOFILE) and some could not be received.
	Oversized uint64
	// Malformed: payloads that are not newline-separated KEY=VALUE assignments.
	Malformed uint64
	// FdsClosed: descriptors received with SCM_RIGHTS (FDSTORE=1, BARRIER=1 and the like),
	// all closed, delivered datagram or not.
	FdsClosed uint64
	// ReadErrors: failed reads of the socket (recvmsg: ENOMEM, ENOBUFS…). The
	// reader counts them and goes on, pausing a little while they repeat.
	ReadErrors uint64
}

// notifyMsg is one message from a worker (package internal/notify owns the socket).
type notifyMsg = notify.Msg

// notifySocket is the workers' NOTIFY_SOCKET, its drops in the exported form.
type notifySocket struct{ *notify.Socket }

func openNotifySocket() (*notifySocket, error) {
	n, err := notify.Open()
	if err != nil {
		return nil, err
	}
	return &notifySocket{n}, nil
}

// notifySocketFromFd takes over the socket an upgrade handed on.
func notifySocketFromFd(fd int) (*notifySocket, error) {
	n, err := notify.FromFd(fd)
	if err != nil {
		return nil, err
	}
	return &notifySocket{n}, nil
}

// dropped returns the socket's counts; Foreign is the table's.
func (n *notifySocket) dropped() NotifyDrops {
	d := n.Dropped()
	return NotifyDrops{NoCredentials: d.NoCredentials, Oversized: d.Oversized,
		Malformed: d.Malformed, FdsClosed: d.FdsClosed, ReadErrors: d.ReadErrors}
}

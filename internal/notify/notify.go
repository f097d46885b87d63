package notify

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"strconv"
	"sync/atomic"
	"unicode/utf8"
)

const (
	// maxDatagram is the largest datagram accepted, systemd's NOTIFY_BUFFER_MAX (PIPE_BUF).
	maxDatagram = 4096
	// maxPid is the kernel's PID_MAX_LIMIT on 64-bit systems: no pid is larger.
	maxPid = 1 << 22
	// maxErrno bounds ERRNO=, an int in C.
	maxErrno = math.MaxInt32
)

// Msg is one parsed datagram.
type Msg struct {
	Pid             int    // sender, from SCM_CREDENTIALS (kernel-verified)
	Ready           bool   // READY=1
	Reloading       bool   // RELOADING=1
	Stopping        bool   // STOPPING=1
	Watchdog        bool   // WATCHDOG=1
	WatchdogTrigger bool   // WATCHDOG=trigger
	Status          string // STATUS=..., "" if absent
	Errno           int    // ERRNO=..., 0 if absent
	MainPID         int    // MAINPID=..., 0 if absent
	WatchdogUsec    uint64 // WATCHDOG_USEC=..., 0 if absent
}

// Parse parses one datagram's payload; Pid is left 0, since the payload does not carry it.
//
// The payload is split on '\n' and empty lines are skipped. Every other line must be KEY=VALUE
// with a KEY of [A-Z0-9_]+, and a known KEY must have a valid value: READY, RELOADING and STOPPING
// take 1; WATCHDOG takes 1 or trigger; STATUS takes any UTF-8 text; ERRNO a decimal int >= 0;
// MAINPID a decimal pid (1 to 2^22); WATCHDOG_USEC a decimal uint64. Unknown keys are ignored,
// as systemd ignores them. When a known key repeats, the first assignment counts, as in systemd,
// though every one must be valid.
//
// Where systemd logs and skips a bad line, Parse is strict: a malformed line, a bad value,
// a NUL byte or a payload over 4096 bytes makes the whole datagram an error, which names the line
// or key, so that the caller can count it as malformed.
func Parse(b []byte) (Msg, error) {
	var m Msg
	if len(b) > maxDatagram {
		return m, fmt.Errorf("notify: datagram of %d bytes, more than %d", len(b), maxDatagram)
	}
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return m, fmt.Errorf("notify: NUL byte at offset %d", i)
	}
	var seen assigned
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		if len(line) == 0 {
			continue
		}
		key, val, ok := bytes.Cut(line, []byte{'='})
		if !ok || !validKey(key) {
			return Msg{}, fmt.Errorf("notify: line %d %s: not KEY=VALUE with KEY of [A-Z0-9_]", n, quote(line))
		}
		if err := m.set(string(key), val, &seen); err != nil {
			return Msg{}, fmt.Errorf("notify: %s=%s: %w", key, quote(val), err)
		}
	}
	return m, nil
}

// assigned records which keys with a value were assigned, so that the first assignment wins.
type assigned struct{ status, errno, mainPID, watchdogUsec bool }

// firstAssignment reports whether *seen was false, and sets it.
func firstAssignment(seen *bool) bool {
	was := *seen
	*seen = true
	return !was
}

// set checks val for a known key and stores it in m, unless the key was seen before. Unknown
// keys are ignored.
func (m *Msg) set(key string, val []byte, seen *assigned) error {
	switch key {
	case "READY":
		return setFlag(&m.Ready, val)
	case "RELOADING":
		return setFlag(&m.Reloading, val)
	case "STOPPING":
		return setFlag(&m.Stopping, val)
	case "WATCHDOG": // two events, each sent as its own line: either or both may be set
		if string(val) == "trigger" {
			m.WatchdogTrigger = true
			return nil
		}
		if string(val) != "1" {
			return errors.New("want 1 or trigger")
		}
		m.Watchdog = true
	case "STATUS":
		if !utf8.Valid(val) {
			return errors.New("not UTF-8")
		}
		if firstAssignment(&seen.status) {
			m.Status = string(val)
		}
	case "ERRNO":
		v, err := parseNumber(val, 0, maxErrno)
		if err != nil {
			return err
		}
		if firstAssignment(&seen.errno) {
			m.Errno = int(v)
		}
	case "MAINPID":
		v, err := parseNumber(val, 1, maxPid)
		if err != nil {
			return err
		}
		if firstAssignment(&seen.mainPID) {
			m.MainPID = int(v)
		}
	case "WATCHDOG_USEC":
		v, err := parseNumber(val, 0, math.MaxUint64)
		if err != nil {
			return err
		}
		if firstAssignment(&seen.watchdogUsec) {
			m.WatchdogUsec = v
		}
	}
	return nil
}

// setFlag sets *flag for the value "1", the only one a flag takes.
func setFlag(flag *bool, val []byte) error {
	if string(val) != "1" {
		return errors.New("want 1")
	}
	*flag = true
	return nil
}

// parseNumber parses digits only (no sign, no spaces) as a number in [lo, hi].
func parseNumber(val []byte, lo, hi uint64) (uint64, error) {
	v, err := strconv.ParseUint(string(val), 10, 64)
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("want a decimal number from %d to %d", lo, hi)
	}
	return v, nil
}

func validKey(k []byte) bool {
	if len(k) == 0 {
		return false
	}
	for _, c := range k {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') && c != '_' {
			return false
		}
	}
	return true
}

// quote quotes b for an error message, cut to 64 bytes.
func quote(b []byte) string {
	const limit = 64
	if len(b) > limit {
		return strconv.Quote(string(b[:limit])) + "..."
	}
	return strconv.Quote(string(b))
}

// Drops counts the datagrams a Socket dropped, by reason, and the descriptors that came with
// datagrams and were closed.
type Drops struct {
	// NoCredentials: datagrams without the sender's pid. The kernel attaches it to every
	// datagram once SO_PASSCRED is set, which Open does before binding, so this counts only
	// datagrams queued on an inherited socket before SO_PASSCRED was set, and senders whose pid
	// this process cannot see (another pid namespace: the kernel says 0).
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

// Socket receives notify datagrams for one supervisor.
type Socket struct {
	name    string
	conn    *net.UnixConn
	closed  atomic.Bool
	serving atomic.Bool

	noCredentials, oversized, malformed, fdsClosed, readErrors atomic.Uint64

	// recvmsg is unix.Recvmsg; a test seam.
	recvmsg func(fd int, p, oob []byte, flags int) (n, oobn, recvflags int, from sockaddr, err error)
}

// Name returns the NOTIFY_SOCKET value for workers: "@name" for an abstract socket, else a path.
func (n *Socket) Name() string { return n.name }

// Control calls f with the socket's descriptor, e.g. to hand it across an in-place exec; the
// descriptor is close-on-exec, so whoever execs must clear that. f must not keep the descriptor.
// After Close, Control returns an error wrapping [net.ErrClosed].
func (n *Socket) Control(f func(fd uintptr)) error {
	rc, err := n.conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("notify socket %s: %w", n.name, err)
	}
	if err := rc.Control(f); err != nil {
		return fmt.Errorf("notify socket %s: %w", n.name, err)
	}
	return nil
}

// Dropped returns a snapshot of the counters.
func (n *Socket) Dropped() Drops {
	return Drops{
		NoCredentials: n.noCredentials.Load(),
		Oversized:     n.oversized.Load(),
		Malformed:     n.malformed.Load(),
		FdsClosed:     n.fdsClosed.Load(),
		ReadErrors:    n.readErrors.Load(),
	}
}

// Close closes the socket, making Serve return; datagrams still queued are lost. It is
// idempotent and does not wait for Serve to return: whoever runs Serve joins it.
func (n *Socket) Close() error {
	if n.closed.Swap(true) {
		return nil
	}
	if err := n.conn.Close(); err != nil {
		return fmt.Errorf("notify socket %s: %w", n.name, err)
	}
	return nil
}

// statPPid returns the parent pid from the contents of /proc/<pid>/stat: "pid (comm) state ppid
// ...". comm is the executable's name, which may hold spaces and parentheses, so the fields are
// counted from the last ')'.
func statPPid(stat []byte) (int, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %s: no ')'", quote(stat))
	}
	f := bytes.Fields(stat[i+1:])
	if len(f) < 2 {
		return 0, fmt.Errorf("stat %s: no ppid", quote(stat))
	}
	ppid, err := strconv.Atoi(string(f[1]))
	if err != nil || ppid < 0 {
		return 0, fmt.Errorf("stat %s: ppid %s", quote(stat), quote(f[1]))
	}
	return ppid, nil
}

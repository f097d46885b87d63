package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// exitWatch records when processes exit, as the kernel saw it: the proc
// connector (netlink) reports every exit with a CLOCK_MONOTONIC timestamp
// taken in the exiting task, so the figure owes nothing to when anyone
// was scheduled. It needs CAP_NET_ADMIN and sees the whole machine.
type exitWatch struct {
	fd      int
	stop    atomic.Bool
	done    chan struct{}
	mu      sync.Mutex
	exits   map[int]int64 // pid → CLOCK_MONOTONIC ns
	dropped bool          // the socket overflowed: some events are lost
}

// Layout of a proc connector message: nlmsghdr, cn_msg, proc_event.
const (
	nlHdrLen        = 16
	cnMsgLen        = 20
	cnIdxProc       = 1
	cnValProc       = 1
	procMcastListen = 1
	procEventExit   = 0x80000000
	evWhat          = nlHdrLen + cnMsgLen // u32
	evTimestamp     = evWhat + 8          // u64, after what and cpu
	evExitPid       = evTimestamp + 8     // exit: process_pid, process_tgid, ...
)

func watchExits() (*exitWatch, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, os.NewSyscallError("socket(NETLINK_CONNECTOR)", err)
	}
	fail := func(call string, err error) (*exitWatch, error) {
		unix.Close(fd)
		return nil, os.NewSyscallError(call, err)
	}
	// Room for a flood's events, and the machine's other processes'.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20); err != nil {
		return fail("setsockopt SO_RCVBUFFORCE", err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 50_000}); err != nil {
		return fail("setsockopt SO_RCVTIMEO", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		return fail("bind", err)
	}
	msg := make([]byte, nlHdrLen+cnMsgLen+4)
	le := binary.LittleEndian
	le.PutUint32(msg[0:], uint32(len(msg)))
	le.PutUint16(msg[4:], unix.NLMSG_DONE)
	le.PutUint32(msg[12:], uint32(os.Getpid()))
	le.PutUint32(msg[nlHdrLen:], cnIdxProc)
	le.PutUint32(msg[nlHdrLen+4:], cnValProc)
	le.PutUint16(msg[nlHdrLen+16:], 4)
	le.PutUint32(msg[nlHdrLen+cnMsgLen:], procMcastListen)
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("sendto(PROC_CN_MCAST_LISTEN)", err)
	}
	w := &exitWatch{fd: fd, done: make(chan struct{}), exits: map[int]int64{}}
	go w.run()
	return w, nil
}

func (w *exitWatch) run() {
	defer close(w.done)
	buf := make([]byte, 1<<16)
	for !w.stop.Load() {
		n, _, err := unix.Recvfrom(w.fd, buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN), errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.ENOBUFS):
			w.mu.Lock()
			w.dropped = true
			w.mu.Unlock()
			continue
		case err != nil:
			return
		}
		w.event(buf[:n]) // the connector sends one message per datagram
	}
}

// event records an exit event of a whole process (pid == tgid).
func (w *exitWatch) event(m []byte) {
	if len(m) < evExitPid+8 || binary.LittleEndian.Uint32(m[evWhat:]) != procEventExit {
		return
	}
	pid := int(int32(binary.LittleEndian.Uint32(m[evExitPid:])))
	tgid := int(int32(binary.LittleEndian.Uint32(m[evExitPid+4:])))
	if pid != tgid {
		return // a thread
	}
	ts := int64(binary.LittleEndian.Uint64(m[evTimestamp:]))
	w.mu.Lock()
	w.exits[pid] = ts
	w.mu.Unlock()
}

// at returns when pid exited, in CLOCK_MONOTONIC nanoseconds, waiting up
// to d for the event to be read.
func (w *exitWatch) at(pid int, d time.Duration) (int64, error) {
	deadline := time.Now().Add(d)
	for {
		w.mu.Lock()
		ts, ok := w.exits[pid]
		dropped := w.dropped
		w.mu.Unlock()
		if ok {
			return ts, nil
		}
		if time.Now().After(deadline) {
			if dropped {
				return 0, fmt.Errorf("no exit event for pid %d: the proc connector dropped events", pid)
			}
			return 0, fmt.Errorf("no exit event for pid %d within %v", pid, d)
		}
		time.Sleep(time.Millisecond) // polling the reader's map; bounded by d
	}
}

func (w *exitWatch) close() {
	w.stop.Store(true)
	<-w.done
	unix.Close(w.fd)
}

// monoOffset returns the wall clock minus CLOCK_MONOTONIC, in
// nanoseconds: what turns a time.Time into the proc connector's clock.
func monoOffset() int64 {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	wall := time.Now().UnixNano()
	return wall - ts.Nano()
}

package supervisor

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// procInfo is what the tree walk needs of one process, from /proc/PID/stat.
type procInfo struct {
	pid, ppid, pgid int
	start           uint64 // start time in clock ticks since boot: tells a pid's reuse
}

// scanProcs reads every process's stat line. Processes that exit during the
// scan are skipped.
func scanProcs() ([]procInfo, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]procInfo, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if p, ok := readStat(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// readStat parses /proc/PID/stat; false if the process is gone.
func readStat(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then: state ppid pgrp session … starttime (the 20th).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procInfo{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return procInfo{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgid, err2 := strconv.Atoi(string(f[2]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return procInfo{}, false
	}
	return procInfo{pid: pid, ppid: ppid, pgid: pgid, start: start}, true
}

// treeOf returns the processes that belong to the trees of roots: their
// descendants by parent; the members of the process groups in groups (a
// worker leads its own group, so this finds the part of its tree whose parent
// died, unless it called setsid), and the descendants of those. Roots and self
// are left out.
func treeOf(procs []procInfo, self int, roots, groups map[int]bool) []procInfo {
	kids := make(map[int][]procInfo, len(procs))
	for _, p := range procs {
		kids[p.ppid] = append(kids[p.ppid], p)
	}
	seen := map[int]bool{self: true}
	var out []procInfo
	var walk func(p procInfo)
	walk = func(p procInfo) {
		if seen[p.pid] {
			return
		}
		seen[p.pid] = true
		if !roots[p.pid] {
			out = append(out, p)
		}
		for _, k := range kids[p.pid] {
			walk(k)
		}
	}
	for _, p := range procs {
		if roots[p.pid] {
			walk(p)
		}
	}
	for _, p := range procs {
		if groups[p.pgid] && p.pgid != self {
			walk(p)
		}
	}
	return out
}

// openStray opens a pidfd for p and checks that it still names the process
// that was scanned, not one that reused its pid since.
func openStray(p procInfo) (*os.File, error) {
	fd, err := unix.PidfdOpen(p.pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	if now, ok := readStat(p.pid); !ok || now.start != p.start {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d: %w", p.pid, os.ErrProcessDone)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(p.pid)), nil
}

// signalPidfd sends sig through the pidfd f.
func signalPidfd(f *os.File, sig syscall.Signal) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return err
	}
	if serr == unix.ESRCH {
		return os.ErrProcessDone
	}
	return os.NewSyscallError("pidfd_send_signal", serr)
}

// waitPidfd blocks, parked in the netpoller, until the process of f has
// exited or f is closed.
func waitPidfd(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	rc.Read(func(fd uintptr) bool {
		// A pidfd polls readable once its process has exited.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, _ := unix.Poll(fds, 0)
		return n > 0
	})
}

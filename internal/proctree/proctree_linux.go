package proctree

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// Scan reads every process's stat line. Processes that exit during the
// scan are skipped.
func Scan() ([]Proc, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	out := make([]Proc, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if p, ok := Stat(pid); ok {
			out = append(out, p)
		}
	}
	return out, nil
}

// Stat parses /proc/PID/stat; false if the process is gone.
func Stat(pid int) (Proc, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Proc{}, false
	}
	// The command name may hold spaces and parentheses: fields start after
	// the last ')'. Then: state ppid pgrp session … starttime (the 20th).
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Proc{}, false
	}
	f := bytes.Fields(b[i+1:])
	if len(f) < 20 {
		return Proc{}, false
	}
	ppid, err1 := strconv.Atoi(string(f[1]))
	pgid, err2 := strconv.Atoi(string(f[2]))
	start, err3 := strconv.ParseUint(string(f[19]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return Proc{}, false
	}
	return Proc{Pid: pid, PPid: ppid, Pgid: pgid, Start: start}, true
}

// Open opens a pidfd for p and checks that it still names the process
// that was scanned, not one that reused its pid since.
func Open(p Proc) (*os.File, error) {
	fd, err := unix.PidfdOpen(p.Pid, 0)
	if err != nil {
		return nil, os.NewSyscallError("pidfd_open", err)
	}
	if now, ok := Stat(p.Pid); !ok || now.Start != p.Start {
		unix.Close(fd)
		return nil, fmt.Errorf("pid %d: %w", p.Pid, os.ErrProcessDone)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	return os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(p.Pid)), nil
}

// Signal sends sig through the pidfd f: os.ErrProcessDone once the process has exited,
// os.ErrClosed once f is closed.
func Signal(f *os.File, sig syscall.Signal) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return fmt.Errorf("pidfd: %w (%v)", os.ErrClosed, err) // the only way Control fails
	}
	if serr == unix.ESRCH {
		return os.ErrProcessDone
	}
	return os.NewSyscallError("pidfd_send_signal", serr)
}

// Wait blocks, parked in the netpoller, until the process of f has
// exited or f is closed.
func Wait(f *os.File) {
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

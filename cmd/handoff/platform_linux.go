package main

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// parseSignal parses a signal by name, with or without SIG, in any case
// ("TERM", "sigquit"), or by number (15).
func parseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 1 || n > 64 {
			return 0, fmt.Errorf("signal number %d is out of range: want 1 to 64", n)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %s: want a name such as TERM, QUIT or INT, or a number", quoteShort(s))
}

// processAlive reports whether a process with the pid exists (a zombie
// counts).
func processAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}

// processStart returns when this process started, which an upgrade in place
// does not change; fallback if /proc does not tell. The kernel counts from
// boot in clock ticks (USER_HZ, 100 a second).
func processStart(fallback time.Time) time.Time {
	stat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return fallback
	}
	// The command name, in parentheses, may hold spaces: count from after it.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return fallback
	}
	// Fields from the state (3rd of the line) on; starttime is the 22nd.
	fields := strings.Fields(string(stat[i+1:]))
	if len(fields) < 20 {
		return fallback
	}
	ticks, err := strconv.ParseInt(fields[19], 10, 64)
	if err != nil {
		return fallback
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		return fallback
	}
	age := time.Duration(ts.Nano()) - time.Duration(ticks)*10*time.Millisecond
	if t := time.Now().Add(-age); t.Before(fallback) {
		return t
	}
	return fallback
}

// checkPrivateDir checks that only this user may enter dir: it is a
// directory (not a symlink to one), owned by the effective user, with no
// permissions for group or others.
func checkPrivateDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("%s is not a directory", dir)
	case !ok:
		return fmt.Errorf("%s: no owner information", dir)
	case int(st.Uid) != os.Geteuid():
		return fmt.Errorf("%s belongs to uid %d, not to uid %d that handoff runs as", dir, st.Uid, os.Geteuid())
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("%s has mode %04o: others may enter it; give a directory of mode 0700, or a path in a missing one, which handoff creates", dir, fi.Mode().Perm())
	}
	return nil
}

// checkPeer accepts a control connection from handoff's own user or root.
// The socket's mode and directory keep others out already; this is the
// kernel's word for it.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return os.NewSyscallError("getsockopt SO_PEERCRED", credErr)
	}
	if uid := int(cred.Uid); uid != os.Geteuid() && uid != 0 {
		return fmt.Errorf("peer pid %d runs as uid %d, neither handoff's uid %d nor root", cred.Pid, uid, os.Geteuid())
	}
	return nil
}

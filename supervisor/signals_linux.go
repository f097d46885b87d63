package supervisor

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// handledSignals are the signals Run handles WithSignals.
var handledSignals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU,
}

const (
	sigUpgrade = syscall.SIGUSR2
	sigMore    = syscall.SIGTTIN
	sigFewer   = syscall.SIGTTOU
)

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as systemd wants it
// with RELOADING=1.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts) != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// execInPlace execs path with fds kept open across the exec. A signal whose
// default action ends the process would kill it if it landed in the exec
// window, so with ignore the handled signals are ignored across the exec:
// the kernel keeps an ignored disposition in the new program until it
// registers its handlers (its init does, first thing). On failure it puts
// the fds back to close-on-exec; the caller re-registers its signals.
func execInPlace(path string, env []string, fds []int, ignore bool) error {
	setCloexec := func(on bool) error {
		flag := 0
		if on {
			flag = unix.FD_CLOEXEC
		}
		for _, fd := range fds {
			if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, flag); err != nil {
				return os.NewSyscallError("fcntl F_SETFD", err)
			}
		}
		return nil
	}
	if err := setCloexec(false); err != nil {
		setCloexec(true)
		return err
	}
	if ignore {
		signal.Ignore(handledSignals...)
	}
	err := syscall.Exec(path, os.Args, env)
	setCloexec(true)
	return fmt.Errorf("exec %s: %w", path, err)
}

// setCloexec marks f close-on-exec, as everything this process opens is,
// after an upgrade handed it over without.
func setCloexec(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { _, serr = unix.FcntlInt(fd, unix.F_SETFD, unix.FD_CLOEXEC) }); err != nil {
		return err
	}
	return os.NewSyscallError("fcntl F_SETFD", serr)
}

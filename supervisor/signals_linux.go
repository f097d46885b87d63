package supervisor

import (
	"fmt"
	"os"
	"runtime"
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
// window, and an ignored one would be lost; so with block the handled
// signals are blocked on the exec'ing thread. Once the kernel has ended the
// process's other threads, that thread is the process: a signal arriving
// then stays pending through the exec, and the new program receives it when
// its init registers its handlers (os/signal unblocks what it is notified
// of). Nothing is ignored or reset, so every signal.Notify of the process
// survives a failed exec. On failure it restores the thread's mask (pending
// signals are delivered then) and puts the fds back to close-on-exec.
//
// The new program inherits the mask: its own threads keep the handled
// signals blocked except the one os/signal listens on, which is enough for
// it; workers get an empty mask from the trampoline (package launch).
func execInPlace(path string, env []string, fds []int, block bool) error {
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
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var old unix.Sigset_t
	if block {
		var set unix.Sigset_t
		for _, sig := range handledSignals {
			n := uint(sig.(syscall.Signal)) - 1
			set.Val[n/64] |= 1 << (n % 64)
		}
		if err := unix.PthreadSigmask(unix.SIG_BLOCK, &set, &old); err != nil {
			setCloexec(true)
			return os.NewSyscallError("pthread_sigmask", err)
		}
	}
	err := syscall.Exec(path, os.Args, env)
	if block {
		unix.PthreadSigmask(unix.SIG_SETMASK, &old, nil)
	}
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

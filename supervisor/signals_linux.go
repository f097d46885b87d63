package supervisor

import (
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

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

// execInPlace execs path with fds kept open across the exec, and the
// environment env with what last returns at the last moment. With quiet,
// the handled signals that can be kept from killing or stopping the process
// in the exec window are set to SIG_IGN there (see quietSignals); on
// failure their handlers are put back as they were and the fds back to
// close-on-exec.
//
// SIGTERM is the one signal no Go program can be protected from in the
// window: the new program's runtime unblocks it on its first thread
// (runtime.minit: blockableSig is false for _SigKill signals) and installs
// its own handler for it, ignoring an inherited SIG_IGN (sigInstallGoHandler
// keeps only SIGHUP's and SIGINT's), before any package init runs, and that
// handler ends the process until someone is notified of SIGTERM, which
// package early does first thing. So a SIGTERM that lands between the exec
// and early's init (a few milliseconds: the runtime's start) ends the
// process, whatever it blocked or ignored before. The janitor then stops the
// workers gracefully (janitor.go): no request fails, the stop completes,
// and only the supervisor's status says SIGTERM.
func execInPlace(path string, env []string, fds []int, quiet bool, last func() []string) error {
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
	var restore, undie func()
	if quiet {
		var err error
		if restore, err = setRaw(quietSignals, sigIgn); err != nil {
			setCloexec(true)
			return err
		}
		if undie, err = setRaw(stopSignals, sigDfl); err != nil {
			restore()
			setCloexec(true)
			return err
		}
		// A stop signal the runtime took in just before is on its way to
		// the program's channel: give it a moment to get there, for last.
		time.Sleep(2 * time.Millisecond)
	}
	err := syscall.Exec(path, os.Args, append(env, last()...))
	if restore != nil {
		undie()
		restore()
	}
	setCloexec(true)
	return fmt.Errorf("exec %s: %w", path, err)
}

// quietSignals are the handled signals set to SIG_IGN across an upgrade's
// exec. A Go program keeps an inherited SIG_IGN for SIGHUP until it is
// notified of it (package early does it first thing), and never ends or
// stops for an unnotified SIGUSR2, SIGTTIN or SIGTTOU once its runtime has
// started; before that (in the exec itself) the default action of each
// would end or stop the process. One of these arriving in the window is
// lost, never fatal. The stop signals are the other way round
// (stopSignals).
//
// They are ignored, not blocked: a blocked mask survives the exec, and the
// new program's every thread, and every child it starts with os/exec, would
// inherit it (the Go runtime restores its initial mask in each child).
var quietSignals = []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU}

// stopSignals get their default action across an upgrade's exec: one that
// arrives after the signals for the new program were read ends the process
// then and there, and the janitor stops the workers as the supervisor
// would have; under the runtime's handler it would be taken in and lost
// with the old image. The new program's first milliseconds are the same
// (see execInPlace).
var stopSignals = []syscall.Signal{syscall.SIGTERM, syscall.SIGINT}

const (
	sigDfl = 0
	sigIgn = 1
)

// kernelSigaction is the kernel's struct sigaction on amd64 and arm64 (both
// have sa_restorer); other fields than the handler are only copied back.
type kernelSigaction struct {
	handler, flags, restorer uintptr
	mask                     uint64
}

// setRaw sets sigs to SIG_IGN or SIG_DFL with rt_sigaction itself, behind the Go
// runtime's back: signal.Ignore would cancel every signal.Notify of the
// process, the program's own included. restore puts back the handlers
// (the runtime's) exactly as they were.
func setRaw(sigs []syscall.Signal, handler uintptr) (restore func(), err error) {
	old := make([]kernelSigaction, len(sigs))
	set := 0
	restore = func() {
		for i := range set {
			rtSigaction(sigs[i], &old[i], nil)
		}
	}
	act := kernelSigaction{handler: handler}
	for i, sig := range sigs {
		if err := rtSigaction(sig, &act, &old[i]); err != nil {
			restore()
			return nil, err
		}
		set++
	}
	return restore, nil
}

func rtSigaction(sig syscall.Signal, act, old *kernelSigaction) error {
	const sigsetSize = 8
	_, _, e := unix.RawSyscall6(unix.SYS_RT_SIGACTION, uintptr(sig),
		uintptr(unsafe.Pointer(act)), uintptr(unsafe.Pointer(old)), sigsetSize, 0, 0)
	if e != 0 {
		return os.NewSyscallError("rt_sigaction", e)
	}
	return nil
}

package supervisor

import (
	"os"
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

package supervisor

import (
	"os"
	"syscall"
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

//go:build !linux

package supervisor

import (
	"os"
	"syscall"
)

var handledSignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT}

// Signals that do not exist here; they never arrive.
const (
	sigUpgrade = syscall.Signal(-2)
	sigMore    = syscall.Signal(-3)
	sigFewer   = syscall.Signal(-4)
)

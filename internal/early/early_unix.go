//go:build unix

package early

import (
	"os"
	"syscall"
)

// Signals are the ones a supervisor handles WithSignals.
var Signals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU,
}

func closeOnExec(fd int) { syscall.CloseOnExec(fd) }

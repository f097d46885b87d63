// Package early catches the supervisor's signals from the first moment of a
// program that an in-place upgrade exec'd, until the supervisor's Run takes
// them over. It imports nothing but os/signal and what that needs, so that
// its init runs before the inits of heavier packages (Go initializes
// packages in import path order once their imports are done): the Go
// runtime handles SIGTERM from its start, and until someone is notified of
// it, a SIGTERM ends the process. Signals are process-wide, so this is
// package state.
package early

import (
	"os"
	"os/signal"
	"sync"
	"syscall"
)

// EnvUpgradeState is set in the environment of a program an upgrade exec'd.
const EnvUpgradeState = "HANDOFF_UPGRADE_STATE"

// Signals are the ones a supervisor handles WithSignals.
var Signals = []os.Signal{
	syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU,
}

var caught struct {
	sync.Mutex
	sigs chan os.Signal
}

func init() {
	if _, ok := os.LookupEnv(EnvUpgradeState); ok {
		caught.sigs = make(chan os.Signal, 2048)
		signal.Notify(caught.sigs, Signals...)
	}
}

// Take returns the channel init registered, or nil; only once.
func Take() chan os.Signal {
	caught.Lock()
	defer caught.Unlock()
	c := caught.sigs
	caught.sigs = nil
	return c
}

// Package early catches the supervisor's signals from the first moment of a
// program that an in-place upgrade exec'd, until the supervisor's Run takes
// them over, and makes the descriptor the upgrade state came on
// close-on-exec, so that nothing the program starts before its supervisor
// reads it inherits it. It imports nothing but os/signal and what that
// needs, so that its init runs before the inits of heavier packages (Go
// initializes packages in import path order once their imports are done):
// the Go runtime handles SIGTERM from its start, and until someone is
// notified of it, a SIGTERM ends the process. Signals are process-wide, so
// this is package state.
package early

import (
	"os"
	"os/signal"
	"sync"
)

// EnvUpgradeState is set in the environment of a program an upgrade
// exec'd: the number of the descriptor its state is on (package
// internal/handover).
const EnvUpgradeState = "HANDOFF_UPGRADE_STATE"

var caught struct {
	sync.Mutex
	sigs chan os.Signal
}

func init() {
	v, ok := os.LookupEnv(EnvUpgradeState)
	if !ok || len(Signals) == 0 { // none: signal.Notify would catch them all
		return
	}
	caught.sigs = make(chan os.Signal, 2048)
	signal.Notify(caught.sigs, Signals...)
	if fd, ok := number(v); ok && fd > 2 {
		closeOnExec(fd)
	}
}

// number parses a descriptor number without strconv.
func number(s string) (int, bool) {
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' || n > 1<<20 {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, s != ""
}

// Take returns the channel init registered, or nil; only once.
func Take() chan os.Signal {
	caught.Lock()
	defer caught.Unlock()
	c := caught.sigs
	caught.sigs = nil
	return c
}

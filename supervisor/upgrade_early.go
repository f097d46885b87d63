package supervisor

import (
	"fmt"
	"os"
	"os/signal"
	"sync"
	"time"
)

// The variables of an in-place upgrade. The old program runs the new binary
// once with HANDOFF_PREFLIGHT=1 and expects preflightOK on its stdout and
// status 0; then it execs it with the worker table in HANDOFF_UPGRADE_STATE.
const (
	envPreflight    = "HANDOFF_PREFLIGHT"
	envUpgradeState = "HANDOFF_UPGRADE_STATE"
	preflightOK     = "handoff-preflight-ok"

	preflightTimeout = 10 * time.Second
)

// earlySignals catches the supervisor's signals from the first moment of a
// program that an upgrade exec'd until its Run takes them over. Signals are
// process-wide, so this is the one piece of package state.
var early struct {
	sync.Mutex
	sigs chan os.Signal
}

func init() {
	if os.Getenv(envPreflight) == "1" {
		fmt.Println(preflightOK)
		os.Exit(0)
	}
	if _, ok := os.LookupEnv(envUpgradeState); ok {
		early.sigs = make(chan os.Signal, 2048)
		signal.Notify(early.sigs, handledSignals...)
	}
}

// Resuming reports whether this process is the new program of an in-place
// upgrade whose state its supervisor has not taken over yet: the sockets
// and workers will come from the old program (so, for instance, a program
// adopted from systemd is not there to adopt again). Ask before Run.
func Resuming() bool {
	_, ok := os.LookupEnv(envUpgradeState)
	return ok
}

// takeEarlySignals returns the channel init registered, or a new one.
func takeEarlySignals() chan os.Signal {
	early.Lock()
	defer early.Unlock()
	c := early.sigs
	early.sigs = nil
	if c == nil {
		c = make(chan os.Signal, 2048)
	}
	return c
}

package supervisor

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/handoff-dev/handoff/internal/early"
	"github.com/handoff-dev/handoff/internal/handover"
)

// The variables of an in-place upgrade. The old program first runs the new
// binary with its own argv and HANDOFF_PREFLIGHT=3: the program starts as it
// would after the exec, and New, once it has checked everything, writes
// preflightOK to fd 3 and exits 0 instead of returning. So a build whose
// flags, main or New fail is refused before the exec. Then the old program
// execs it, handing it the worker table (package internal/handover; the
// environment carries only the number of the descriptor it is on, in
// HANDOFF_UPGRADE_STATE).
const (
	envPreflight    = "HANDOFF_PREFLIGHT"
	envUpgradeState = handover.EnvState
	preflightOK     = "handoff-preflight-ok"

	preflightTimeout = 10 * time.Second
)

// Resuming reports whether this process is the new program of an in-place
// upgrade whose state its supervisor has not taken over yet: the sockets
// and workers will come from the old program (so, for instance, a program
// adopted from systemd is not there to adopt again). It is also true in the
// preflight run that checks the new program before the exec, which ends in
// New. Ask before Run.
func Resuming() bool {
	return handover.Pending() || os.Getenv(envPreflight) != ""
}

// preflightExit ends a preflight run once New has checked everything: it
// says so on the descriptor HANDOFF_PREFLIGHT names, and exits 0.
func preflightExit() {
	v := os.Getenv(envPreflight)
	if v == "" {
		return
	}
	fd, err := strconv.Atoi(v)
	if err != nil || fd < 3 {
		fmt.Fprintf(os.Stderr, "handoff: %s=%q: want a descriptor number of 3 or more\n", envPreflight, v)
		os.Exit(2)
	}
	f := os.NewFile(uintptr(fd), "preflight")
	if _, err := fmt.Fprintln(f, preflightOK); err != nil {
		fmt.Fprintf(os.Stderr, "handoff: preflight: %v\n", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// takeEarlySignals returns the channel package early registered at the
// start of an upgraded program, or a new one.
func takeEarlySignals() chan os.Signal {
	if c := early.Take(); c != nil {
		return c
	}
	return make(chan os.Signal, 2048)
}

package supervisor

import (
	"os"

	"github.com/handoff-dev/handoff/internal/early"
	"github.com/handoff-dev/handoff/internal/handover"
)

// The variables of an in-place upgrade: the preflight run's, and the one
// that names the descriptor the worker table is handed over on (package
// internal/handover).
const (
	envPreflight    = handover.EnvPreflight
	envUpgradeState = handover.EnvState
)

// Resuming reports whether this process is the new program of an in-place
// upgrade whose state its supervisor has not taken over yet: the sockets
// and workers will come from the old program (so, for instance, a program
// adopted from systemd is not there to adopt again). It is also true in the
// preflight run that checks the new program before the exec, which ends in
// New. Ask before Run.
func Resuming() bool {
	return handover.Pending() || handover.InPreflight()
}

// takeEarlySignals returns the channel package early registered at the
// start of an upgraded program, or a new one.
func takeEarlySignals() chan os.Signal {
	if c := early.Take(); c != nil {
		return c
	}
	return make(chan os.Signal, 2048)
}

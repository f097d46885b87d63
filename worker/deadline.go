package worker

import (
	"os"
	"time"
)

// EnvStopTimeout is the variable in which a handoff supervisor tells its
// workers its stop timeout (a Go duration, such as "30s"): how long after
// SIGTERM it waits before SIGKILL.
const EnvStopTimeout = "HANDOFF_STOP_TIMEOUT"

// defaultStopTimeout is the stop timeout assumed when EnvStopTimeout is
// unset: the supervisor's own default.
const defaultStopTimeout = 30 * time.Second

// DefaultDrainTimeout is the drain deadline ServeAndDrain uses unless told
// otherwise: three quarters of the supervisor's stop timeout
// (EnvStopTimeout, 30 s when unset or not a positive duration). What is
// still open at the deadline gets a sixth of it to close cleanly, so the
// drain is over at seven eighths of the stop timeout, before the
// supervisor's SIGKILL.
func DefaultDrainTimeout() time.Duration {
	stop := defaultStopTimeout
	if d, err := time.ParseDuration(os.Getenv(EnvStopTimeout)); err == nil && d > 0 {
		stop = d
	}
	return stop * 3 / 4
}

package worker

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"
)

const (
	envWatchdogUsec = "WATCHDOG_USEC"
	envWatchdogPid  = "WATCHDOG_PID"
)

// WatchdogInterval returns the interval within which the service manager
// expects WATCHDOG=1 from this process (WATCHDOG_USEC), and false when no
// watchdog is set for it: WATCHDOG_USEC unset or malformed, or WATCHDOG_PID
// naming another process, as sd_watchdog_enabled decides.
func WatchdogInterval() (time.Duration, bool) {
	usec, err := strconv.ParseUint(os.Getenv(envWatchdogUsec), 10, 63)
	if err != nil || usec == 0 {
		return 0, false
	}
	if p := os.Getenv(envWatchdogPid); p != "" && p != strconv.Itoa(os.Getpid()) {
		return 0, false
	}
	return time.Duration(usec) * time.Microsecond, true
}

// Watchdog sends WATCHDOG=1 at half the watchdog interval until ctx is
// done, and returns nil then; at once when no watchdog is set. It returns
// the error of a failed send. Pinging from its own goroutine, it proves the
// process is scheduled, not that its work progresses: a program that can
// tell should ping from the work instead.
func Watchdog(ctx context.Context) error {
	d, ok := WatchdogInterval()
	if !ok {
		return nil
	}
	tick := time.NewTicker(max(d/2, time.Millisecond))
	defer tick.Stop()
	for {
		if _, err := Notify("WATCHDOG=1"); err != nil {
			return fmt.Errorf("worker: watchdog: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

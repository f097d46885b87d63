//go:build !linux

package janitor

import (
	"fmt"
	"os"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
	"github.com/handoff-dev/handoff/reap"
)

// start starts nothing: the janitor reads /proc and cgroups.
func start(*reap.Reaper, []*os.File, []string) (*reap.Process, error) {
	return nil, fmt.Errorf("janitor on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

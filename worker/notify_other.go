//go:build !linux

package worker

import (
	"fmt"
	"runtime"

	"github.com/handoff-dev/handoff"
)

func sendNotify(string, string) error {
	return fmt.Errorf("worker: notify: %w (%s)", handoff.ErrNotSupported, runtime.GOOS)
}

//go:build !linux

package worker

import (
	"fmt"
	"os"
	"runtime"

	"github.com/handoff-dev/handoff"
)

func sendNotify(string, string) error {
	return fmt.Errorf("worker: notify: %w (%s)", handoff.ErrNotSupported, runtime.GOOS)
}

func setCloexec(*os.File) error {
	return fmt.Errorf("worker: liveness pipe: %w (%s)", handoff.ErrNotSupported, runtime.GOOS)
}

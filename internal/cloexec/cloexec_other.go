//go:build !unix

package cloexec

import (
	"fmt"
	"os"
	"runtime"

	"github.com/handoff-dev/handoff"
)

// Set marks f close-on-exec.
func Set(*os.File) error { return fmt.Errorf("%w: %s", handoff.ErrNotSupported, runtime.GOOS) }

//go:build !linux

package handover

import (
	"fmt"
	"runtime"
	"syscall"

	"github.com/handoff-dev/handoff"
)

// Exec is not supported here.
func Exec(*Handoff) ([]syscall.Signal, error) {
	return nil, fmt.Errorf("upgrade: exec: %w: %s", handoff.ErrNotSupported, runtime.GOOS)
}

// Receive returns nil without a state, and an error with one: no program
// here could have sent it.
func Receive() (*State, error) {
	if !Pending() {
		return nil, nil
	}
	return nil, fmt.Errorf("upgrade state: %w: %s", handoff.ErrNotSupported, runtime.GOOS)
}

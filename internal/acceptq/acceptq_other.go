//go:build !linux

package acceptq

import (
	"fmt"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
	"github.com/handoff-dev/handoff/listener"
)

// Sample knows nothing of the queue: Known is false.
func Sample(*listener.Socket) (Queue, error) {
	return Queue{}, fmt.Errorf("accept queues on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

// Accepted cannot tell: false.
func Accepted([]int, []*listener.Socket) (bool, error) {
	return false, fmt.Errorf("accepted connections on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

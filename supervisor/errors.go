package supervisor

import "errors"

// Errors returned by the supervisor.
var (
	// ErrClosed is returned by Run when the supervisor was shut down or
	// closed before it started, and by calls made after it stopped.
	ErrClosed = errors.New("supervisor: closed")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("supervisor: already running")
	// ErrInHook is returned by Roll, Upgrade, Scale, Shutdown and Close
	// called from a hook, on the run goroutine that would have to serve
	// them.
	ErrInHook = errors.New("supervisor: called from a hook; call it from another goroutine")
)

package supervisor

import "errors"

// Errors returned by the supervisor.
var (
	// ErrClosed is returned by Run when the supervisor was shut down or
	// closed before it started, and by calls made after it stopped.
	ErrClosed = errors.New("supervisor: closed")
	// ErrRunning is returned by a second call of Run.
	ErrRunning = errors.New("supervisor: already running")
	// ErrInHook is returned by Roll, Upgrade, Scale and ScaleBy called
	// from a hook, which then change nothing, and by Shutdown and Close
	// called from a hook, which have begun the stop but cannot wait for it
	// (see Hooks). From a hook, call them on a goroutine of their own.
	ErrInHook = errors.New("supervisor: called while a hook runs; call it from another goroutine")
)

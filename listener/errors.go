package listener

import "errors"

// Errors returned by this package; test for them with [errors.Is]. On platforms other than
// Linux, every function returns an error wrapping [handoff.ErrNotSupported].
var (
	// ErrNoListeners means the process was not given sockets: LISTEN_FDS is unset or zero, or
	// the variables are meant for another process (LISTEN_PID unset or not this process's pid).
	ErrNoListeners = errors.New("listener: no inherited listeners (LISTEN_FDS not set)")

	// ErrBadEnv means LISTEN_FDS, LISTEN_FDNAMES or LISTEN_PID holds a value that makes no sense.
	ErrBadEnv = errors.New("listener: malformed socket-activation environment")

	// ErrInUse means the address is taken: the port is bound, the abstract name is bound, or a
	// live process answers on the unix socket's path.
	ErrInUse = errors.New("listener: address in use")
)

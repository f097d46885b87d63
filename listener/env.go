package listener

import (
	"fmt"
	"strings"
)

const (
	envFds   = "LISTEN_FDS"
	envNames = "LISTEN_FDNAMES"
	envPid   = "LISTEN_PID"

	// firstFd is SD_LISTEN_FDS_START: the first passed socket is fd 3.
	firstFd = 3
	// maxFds bounds LISTEN_FDS. It is far above any real use and keeps a corrupt value from
	// making us allocate or walk a billion descriptors.
	maxFds = 1 << 16
	// defaultName is what systemd calls a socket that has no name.
	defaultName = "unknown"
)

// parseListenEnv reads the socket-activation variables for the process pid; an empty string
// stands for an unset variable. It returns how many descriptors start at fd 3 and their names.
//
// The rules are libsystemd's (sd_listen_fds_with_names):
//   - LISTEN_FDS unset or "0": no listeners.
//   - LISTEN_PID unset or another pid: the variables are not for us, so no listeners. Accepting
//     an unset LISTEN_PID would be lenient, but LISTEN_PID is what stops a LISTEN_FDS that leaked
//     into a grandchild's environment from making it treat unrelated descriptors as sockets, and
//     libsystemd and go-systemd both refuse it too; so do we.
//   - LISTEN_FDNAMES unset: every name is "unknown". Otherwise it must hold exactly LISTEN_FDS
//     names: names are positional, so with one missing we could not tell which socket lost its
//     name, and padding would hand a socket the wrong name. An empty name reads as "unknown".
//
// Numbers must be plain decimal digits. Errors wrap ErrNoListeners or ErrBadEnv.
func parseListenEnv(pid int, fds, names, lpid string) (n int, fdNames []string, err error) {
	if fds == "" {
		return 0, nil, ErrNoListeners
	}
	if lpid == "" {
		return 0, nil, noListeners("LISTEN_FDS=" + quote(fds) + " is set but LISTEN_PID is not")
	}
	p, ok := parseDecimal(lpid)
	if !ok || p == 0 {
		return 0, nil, fmt.Errorf("%w: LISTEN_PID=%s is not a process id", ErrBadEnv, quote(lpid))
	}
	if p != int64(pid) {
		return 0, nil, noListeners(fmt.Sprintf("LISTEN_PID=%d is another process (this is %d)", p, pid))
	}
	c, ok := parseDecimal(fds)
	switch {
	case !ok:
		return 0, nil, fmt.Errorf("%w: LISTEN_FDS=%s is not a count", ErrBadEnv, quote(fds))
	case c == 0:
		return 0, nil, noListeners("LISTEN_FDS=0")
	case c > maxFds:
		return 0, nil, fmt.Errorf("%w: LISTEN_FDS=%d is more than %d", ErrBadEnv, c, maxFds)
	}
	n = int(c)
	if names == "" {
		fdNames = make([]string, n)
		for i := range fdNames {
			fdNames[i] = defaultName
		}
		return n, fdNames, nil
	}
	if k := strings.Count(names, ":") + 1; k != n {
		return 0, nil, fmt.Errorf("%w: LISTEN_FDNAMES=%s has %d names for LISTEN_FDS=%d", ErrBadEnv, quote(names), k, n)
	}
	fdNames = strings.Split(names, ":")
	for i, name := range fdNames {
		if name == "" {
			fdNames[i] = defaultName
		}
	}
	return n, fdNames, nil
}

// noListenersError is ErrNoListeners for a reason other than an unset LISTEN_FDS, which
// ErrNoListeners's own message names.
type noListenersError struct{ reason string }

func noListeners(reason string) error { return &noListenersError{reason} }

func (e *noListenersError) Error() string { return "listener: no inherited listeners: " + e.reason }

func (e *noListenersError) Unwrap() error { return ErrNoListeners }

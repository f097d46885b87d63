package listener

import "net"

// Inherited is a listener passed to this process, with its name from LISTEN_FDNAMES.
type Inherited struct {
	Name string
	net.Listener
}

// Inherit returns the listeners passed to this process as fd 3 .. 3+LISTEN_FDS-1, named from
// LISTEN_FDNAMES ("unknown" where it is unset or a name is empty). It works for TCP and unix
// stream sockets, from handoff or from systemd.
//
// LISTEN_PID must equal this process's pid; an unset LISTEN_PID is refused as libsystemd does,
// because it is the guard against a LISTEN_FDS meant for an ancestor. Both cases return an error
// wrapping [ErrNoListeners] that says why, as does an unset LISTEN_FDS, so a worker can fall back
// to binding its own socket. A malformed variable gives an error wrapping [ErrBadEnv];
// LISTEN_FDNAMES must hold as many names as LISTEN_FDS counts.
//
// Inherit removes the three variables from the environment, whatever the outcome, and makes the
// descriptors close-on-exec. Each listener uses a close-on-exec duplicate of its descriptor, and
// the original is closed; the socket's open file description, shared with the other workers, is
// left non-blocking (it is made so if it was not). Every descriptor must be a listening socket,
// or Inherit fails naming it and closes the listeners it made.
func Inherit() ([]Inherited, error) { return inherit() }

// Lookup returns the first listener in ls named name.
func Lookup(ls []Inherited, name string) (net.Listener, bool) {
	for _, l := range ls {
		if l.Name == name {
			return l.Listener, true
		}
	}
	return nil, false
}

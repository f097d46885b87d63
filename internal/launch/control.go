package launch

import "fmt"

// Controller is a socket whose descriptor can be borrowed: *listener.Socket.
type Controller interface {
	Control(f func(fd uintptr)) error
}

// ControlAll calls f with the descriptors of socks, in order, all held open until f returns,
// even if a socket is closed meanwhile. Start a worker inside f. A socket whose Control fails
// (a nil or closed *listener.Socket) fails the call, and f is not called.
func ControlAll[S Controller](socks []S, f func(fds []uintptr)) error {
	fds := make([]uintptr, 0, len(socks))
	var hold func(i int) error
	hold = func(i int) error {
		if i == len(socks) {
			f(fds)
			return nil
		}
		var err error
		cerr := socks[i].Control(func(fd uintptr) {
			fds = append(fds, fd)
			err = hold(i + 1)
		})
		if cerr != nil {
			return fmt.Errorf("launch: socket %d: %w", i, cerr)
		}
		return err
	}
	return hold(0)
}

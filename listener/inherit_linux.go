package listener

import (
	"fmt"
	"net"
	"os"
)

func inherit() ([]Inherited, error) {
	n, names, err := takeListenEnv()
	if err != nil {
		return nil, err
	}
	for i := range n {
		if err := setCloexec(firstFd + i); err != nil {
			return nil, err
		}
	}
	for i := range n {
		if err := checkListening(firstFd+i, names[i]); err != nil {
			return nil, err
		}
	}
	ls := make([]Inherited, 0, n)
	for i := range n {
		l, err := fileListener(firstFd+i, names[i])
		if err != nil {
			for _, l := range ls {
				l.Close()
			}
			return nil, err
		}
		ls = append(ls, Inherited{Name: names[i], Listener: l})
	}
	return ls, nil
}

// fileListener turns fd into a net.Listener and closes fd. os.NewFile marks the File as
// non-blocking only if Go itself made the fd so; the fd we pass was made non-blocking elsewhere
// or is blocking, so File.Fd inside net.FileListener does not switch the shared file
// description to blocking. net.FileListener dups the fd close-on-exec and sets O_NONBLOCK.
func fileListener(fd int, name string) (net.Listener, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	l, err := net.FileListener(f)
	if err != nil {
		return nil, fmt.Errorf("listener: fd %d (%s): %w", fd, quote(name), err)
	}
	return l, nil
}

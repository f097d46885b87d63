//go:build !linux

package supervisor

import (
	"fmt"
	"net"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
	"github.com/handoff-dev/handoff/listener"
)

func sampleQueue(sock *listener.Socket) SocketQueue {
	return SocketQueue{Name: sock.Name(), Addr: sock.Addr().String()}
}

func socketListener(*listener.Socket) (net.Listener, error) {
	return nil, fmt.Errorf("%w: %s", handoff.ErrNotSupported, runtime.GOOS)
}

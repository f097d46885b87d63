//go:build !linux

package notify

import (
	"fmt"
	"runtime"

	"github.com/handoff-dev/handoff"
)

// sockaddr is the recvmsg seam's, which nothing calls here: Serve fails.
type sockaddr = any

func notSupported() error {
	return fmt.Errorf("%w: notify socket on %s", handoff.ErrNotSupported, runtime.GOOS)
}

func Open() (*Socket, error) { return nil, notSupported() }

func FromFd(int) (*Socket, error) { return nil, notSupported() }

func (n *Socket) Serve(func(Msg)) error { return notSupported() }

// DescendantOf finds no worker: there is no /proc to walk.
func DescendantOf(int, func(int) bool) (int, bool) { return 0, false }

// MonotonicUsec is 0: no service manager here reads it.
func MonotonicUsec() int64 { return 0 }

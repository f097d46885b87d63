//go:build !linux

package supervisor

import (
	"fmt"
	"runtime"

	"github.com/handoff-dev/handoff"
)

func notifyNotSupported() error {
	return fmt.Errorf("%w: notify socket on %s", handoff.ErrNotSupported, runtime.GOOS)
}

func openNotifySocket() (*notifySocket, error) { return nil, notifyNotSupported() }

func notifySocketFromFd(int) (*notifySocket, error) { return nil, notifyNotSupported() }

func (n *notifySocket) serve(func(notifyMsg)) error { return notifyNotSupported() }

// descendantOf finds no worker: there is no /proc to walk.
func descendantOf(int, func(int) bool) (int, bool) { return 0, false }

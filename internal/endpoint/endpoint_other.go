//go:build !linux

package endpoint

import (
	"fmt"
	"net"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
	"github.com/handoff-dev/handoff/listener"
)

func socketListener(*listener.Socket) (net.Listener, error) {
	return nil, fmt.Errorf("serving a handed-over socket on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

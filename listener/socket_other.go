//go:build !linux

package listener

import (
	"fmt"
	"runtime"

	"github.com/handoff-dev/handoff"
)

func notSupported(what string) error {
	return fmt.Errorf("%w: %s on %s", handoff.ErrNotSupported, what, runtime.GOOS)
}

func listen(Addr, options) (*Socket, error) { return nil, notSupported("Listen") }

func adopt() ([]*Socket, error) { return nil, notSupported("Adopt") }

func fromFd(int, string) (*Socket, error) { return nil, notSupported("AdoptFd") }

func closeFd(int) error { return notSupported("Close") }

func unlink(Addr) error { return notSupported("Unlink") }

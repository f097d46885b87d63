//go:build !linux

package listener

import (
	"fmt"
	"runtime"
)

func notSupported(what string) error {
	return fmt.Errorf("%w: %s on %s", ErrNotSupported, what, runtime.GOOS)
}

func listen(Addr, options) (*Socket, error) { return nil, notSupported("Listen") }

func adopt() ([]*Socket, error) { return nil, notSupported("Adopt") }

func fromFd(int, string) (*Socket, error) { return nil, notSupported("FromFd") }

func closeFd(int) error { return notSupported("Close") }

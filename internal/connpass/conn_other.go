//go:build !linux

package connpass

import (
	"fmt"
	"os"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
)

func notSupported() error {
	return fmt.Errorf("connection hand-over on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

// NewConn closes fd and returns an error wrapping handoff.ErrNotSupported.
func NewConn(fd int, name string) (*Conn, error) {
	os.NewFile(uintptr(fd), name).Close()
	return nil, notSupported()
}

// Pair returns an error wrapping handoff.ErrNotSupported.
func Pair() (*Conn, *os.File, error) { return nil, nil, notSupported() }

// Fd returns an error wrapping handoff.ErrNotSupported.
func (c *Conn) Fd() (int, error) { return -1, notSupported() }

// Send returns an error wrapping handoff.ErrNotSupported.
func (c *Conn) Send(Msg) error { return notSupported() }

// Recv returns an error wrapping handoff.ErrNotSupported.
func (c *Conn) Recv() (Msg, error) { return Msg{Fd: -1}, notSupported() }

// CheckConn returns an error wrapping handoff.ErrNotSupported.
func CheckConn(int) error { return notSupported() }

func (c *Conn) queued() (int, error) { return 0, notSupported() }

func closeFd(fd int) { os.NewFile(uintptr(fd), "").Close() }

func setCloexec(int) {}

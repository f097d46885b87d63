//go:build !linux

package proctree

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	handoff "github.com/handoff-dev/handoff"
)

func notSupported() error {
	return fmt.Errorf("process trees on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

// Scan lists nothing: there is no /proc to read.
func Scan() ([]Proc, error) { return nil, notSupported() }

// Stat finds nothing.
func Stat(int) (Proc, bool) { return Proc{}, false }

// Open watches nothing.
func Open(Proc) (*os.File, error) { return nil, notSupported() }

// Signal reaches nothing.
func Signal(*os.File, syscall.Signal) error { return notSupported() }

// Wait returns at once.
func Wait(*os.File) {}

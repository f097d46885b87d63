//go:build !linux

package reap

import (
	"fmt"
	"runtime"
	"syscall"
)

func notSupported() error {
	return fmt.Errorf("%w: %s", ErrNotSupported, runtime.GOOS)
}

func (r *Reaper) init() error { return notSupported() }

func (r *Reaper) start(string, []string, syscall.ProcAttr) (*Process, error) {
	return nil, notSupported()
}

func (r *Reaper) adopt(int) (*Process, error) { return nil, notSupported() }

func (r *Reaper) close() {}

func (p *Process) signal(syscall.Signal) error { return notSupported() }

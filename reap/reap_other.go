//go:build !linux

package reap

import (
	"fmt"
	"runtime"
	"syscall"

	"github.com/handoff-dev/handoff"
)

func notSupported() error {
	return fmt.Errorf("%w: %s", handoff.ErrNotSupported, runtime.GOOS)
}

func (r *Reaper) init() error { return notSupported() }

func (r *Reaper) start(string, []string, syscall.ProcAttr) (*Process, error) {
	return nil, notSupported()
}

func (r *Reaper) adopt(int) (*Process, error) { return nil, notSupported() }

func (r *Reaper) close() {}

func (p *Process) signal(syscall.Signal) error { return notSupported() }

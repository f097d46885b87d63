//go:build !linux

package launch

import (
	"os"
	"syscall"
)

// sysProcAttr has nothing to add: starting workers fails earlier, in package
// reap, with its handoff.ErrNotSupported.
func sysProcAttr(*Credential, *os.File) *syscall.SysProcAttr { return nil }

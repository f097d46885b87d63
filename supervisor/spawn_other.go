//go:build !linux

package supervisor

import "syscall"

// sysProcAttr has nothing to add: starting workers fails earlier, in package
// reap, with its handoff.ErrNotSupported.
func sysProcAttr(*Credential) *syscall.SysProcAttr { return nil }

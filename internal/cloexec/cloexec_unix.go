//go:build unix

package cloexec

import (
	"os"
	"syscall"
)

// Set marks f close-on-exec.
func Set(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) { syscall.CloseOnExec(int(fd)) })
}

//go:build !linux

package main

import (
	"fmt"
	"runtime"
	"syscall"
)

// reusePort fails: the benchmarks use SO_REUSEPORT on Linux only.
func reusePort(_, _ string, _ syscall.RawConn) error {
	return fmt.Errorf("-reuseport: not supported on %s", runtime.GOOS)
}

//go:build !linux

package supervisor

import (
	"fmt"
	"os"
	"runtime"
	"syscall"

	handoff "github.com/handoff-dev/handoff"
)

type procInfo struct {
	pid, ppid, pgid int
	start           uint64
}

func scanProcs() ([]procInfo, error) {
	return nil, fmt.Errorf("process trees on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

func treeOf([]procInfo, int, map[int]bool, map[int]bool) []procInfo { return nil }

func openStray(procInfo) (*os.File, error) { return nil, os.ErrProcessDone }

func signalPidfd(*os.File, syscall.Signal) error { return os.ErrProcessDone }

func waitPidfd(*os.File) {}

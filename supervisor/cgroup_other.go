//go:build !linux

package supervisor

import (
	"fmt"
	"os"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
)

func makeCgroupBase() (string, error) {
	return "", fmt.Errorf("cgroups on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

func makeCgroup(string) (*os.File, error) { return nil, handoff.ErrNotSupported }

func cgroupDir(string) (string, error) { return "", handoff.ErrNotSupported }

func cgroupMembers(string) []procInfo { return nil }

func killCgroup(string) error { return handoff.ErrNotSupported }

func removeCgroup(string) error { return handoff.ErrNotSupported }

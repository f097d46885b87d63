//go:build !linux

package cgroup

import (
	"fmt"
	"os"
	"runtime"

	handoff "github.com/handoff-dev/handoff"
	"github.com/handoff-dev/handoff/internal/proctree"
)

func notSupported() error {
	return fmt.Errorf("cgroups on %s: %w", runtime.GOOS, handoff.ErrNotSupported)
}

// MakeBase makes nothing.
func MakeBase() (string, error) { return "", notSupported() }

// Make makes nothing.
func Make(string) (*os.File, error) { return nil, notSupported() }

// Dir finds nothing.
func Dir(string) (string, error) { return "", notSupported() }

// Members lists nothing.
func Members(string) []proctree.Proc { return nil }

// Kill kills nothing.
func Kill(string) error { return notSupported() }

// Remove removes nothing.
func Remove(string) error { return notSupported() }

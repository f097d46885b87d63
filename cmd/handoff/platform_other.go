//go:build !linux

package main

import (
	"fmt"
	"net"
	"runtime"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff"
)

// errNotSupported says that handoff works on Linux only; the supervisor
// would refuse to run anyway.
var errNotSupported = fmt.Errorf("handoff: %w (%s)", handoff.ErrNotSupported, runtime.GOOS)

func parseSignal(s string) (syscall.Signal, error) { return 0, errNotSupported }

func processAlive(pid int) bool { return false }

func processStart(fallback time.Time) time.Time { return fallback }

func checkPrivateDir(dir string) error { return errNotSupported }

func checkPeer(conn *net.UnixConn) error { return errNotSupported }

package handover

import (
	"os"
	"syscall"
)

// Handoff is what Exec hands the new program.
type Handoff struct {
	// Path is the new program; Args and Env its argv and environment (a
	// HANDOFF_UPGRADE_STATE in Env is replaced).
	Path      string
	Args, Env []string
	// Fds are kept open across the exec; if it fails, they are made
	// close-on-exec again.
	Fds   []int
	State State
	// Sigs is the channel the program is notified of its handled signals
	// on, nil if it handles none. Exec takes what it holds once the signals
	// are set for the exec's window and hands it on after State.Signals.
	Sigs chan os.Signal
}

// Pending reports whether this program was exec'd by an upgrade whose
// state it has not received yet.
func Pending() bool {
	_, ok := os.LookupEnv(EnvState)
	return ok
}

// Drain takes the signals c holds now; nothing if c is nil.
func Drain(c chan os.Signal) []syscall.Signal {
	var sigs []syscall.Signal
	for {
		select {
		case s := <-c:
			if n, ok := s.(syscall.Signal); ok {
				sigs = append(sigs, n)
			}
		default:
			return sigs
		}
	}
}

// withoutState is env without EnvState.
func withoutState(env []string) []string {
	var out []string
	for _, kv := range env {
		if len(kv) <= len(EnvState) || kv[:len(EnvState)] != EnvState || kv[len(EnvState)] != '=' {
			out = append(out, kv)
		}
	}
	return out
}

//go:build linux

package launch

import (
	"slices"
	"testing"
)

// TestTrampolineFd: a program handed over as a descriptor always goes
// through the trampoline, which execs /proc/self/fd/N, even when there is
// nothing else to set; a program by path goes straight to it then.
func TestTrampolineFd(t *testing.T) {
	argv := []string{"prog", "-x"}
	env := []string{"A=1", "HANDOFF_TRAMPOLINE=stale", "LISTEN_PID=1"}
	path, gotArgv, gotEnv := TrampolineFd(9, argv, env)
	if path != "/proc/self/exe" || !slices.Equal(gotArgv, argv) ||
		!slices.Equal(gotEnv, []string{"A=1", "HANDOFF_TRAMPOLINE=/proc/self/fd/9"}) {
		t.Errorf("TrampolineFd(9) = %q %q %q", path, gotArgv, gotEnv)
	}
	path, _, gotEnv = Trampoline("/bin/true", argv, env)
	if path != "/bin/true" || !slices.Equal(gotEnv, []string{"A=1"}) {
		t.Errorf("Trampoline(/bin/true) with nothing to set = %q %q", path, gotEnv)
	}
	path, _, gotEnv = Trampoline("/bin/true", argv, append(env, "LISTEN_FDS=1"))
	if path != "/proc/self/exe" || !slices.Contains(gotEnv, "HANDOFF_TRAMPOLINE=/bin/true") {
		t.Errorf("Trampoline(/bin/true) with sockets = %q %q", path, gotEnv)
	}
}

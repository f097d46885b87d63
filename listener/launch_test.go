package listener

import "github.com/handoff-dev/handoff/internal/launch"

// The supervisor's side of a spawn, from internal/launch, under the names the tests use: these
// tests check both sides of the fd contract together.

const envTrampoline = "HANDOFF_TRAMPOLINE"

func Trampoline(path string, argv, env []string) (string, []string, []string) {
	return launch.Trampoline(path, argv, env)
}

func Env(socks []*Socket) []string {
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = s.Name()
	}
	return launch.ListenEnv(names)
}

func ControlAll(socks []*Socket, f func(fds []uintptr)) error { return launch.ControlAll(socks, f) }

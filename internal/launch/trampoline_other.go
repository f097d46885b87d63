//go:build !linux

package launch

func trampoline(path string, argv, env []string) (string, []string, []string) {
	return path, argv, env
}

//go:build !linux

package launch

import "strconv"

func trampoline(path string, argv, env []string) (string, []string, []string) {
	return path, argv, env
}

func trampolineFd(fd int, argv, env []string) (string, []string, []string) {
	return "/dev/fd/" + strconv.Itoa(fd), argv, env
}

package launch

import (
	"strconv"
	"strings"
)

// The variables of the socket-activation and watchdog protocols, and the trampoline's own.
const (
	envFds          = "LISTEN_FDS"
	envNames        = "LISTEN_FDNAMES"
	envPid          = "LISTEN_PID"
	envTrampoline   = "HANDOFF_TRAMPOLINE"
	envWatchdogUsec = "WATCHDOG_USEC"
	envWatchdogPid  = "WATCHDOG_PID"
)

// ListenEnv returns the environment entries a worker needs for sockets passed as fd 3, 4, ...
// in order, named names: "LISTEN_FDS=n" and "LISTEN_FDNAMES=a:b:...". LISTEN_PID is set in the
// worker by the trampoline. ListenEnv returns nil for no sockets.
func ListenEnv(names []string) []string {
	if len(names) == 0 {
		return nil
	}
	return []string{
		envFds + "=" + strconv.Itoa(len(names)),
		envNames + "=" + strings.Join(names, ":"),
	}
}

// Trampoline rewrites a spawn of the program at path with argv and env so that the worker finds
// LISTEN_PID equal to its own pid (see the package documentation for why and what it costs).
// Start the process with the results instead of the inputs.
//
// It returns "/proc/self/exe", the running supervisor's own binary, which works even after that
// file was replaced on disk, with argv unchanged and env plus HANDOFF_TRAMPOLINE=path. This
// package's init function, running in that process, removes HANDOFF_TRAMPOLINE, sets LISTEN_PID
// to its pid if LISTEN_FDS is set (and WATCHDOG_PID if WATCHDOG_USEC is), and execs path with
// argv and the environment; the pid does
// not change. If the exec fails it writes "handoff: exec <path>: <error>" to stderr and exits
// with status 127. As with [syscall.StartProcess], path is not looked up in $PATH.
//
// When path is absolute and names the running executable itself, there is no second exec: the
// result is path, and HANDOFF_TRAMPOLINE is set empty, which tells the init to set LISTEN_PID
// and let the program run. When env sets neither LISTEN_FDS nor WATCHDOG_USEC, there is nothing
// to set, and the spawn goes straight to path.
//
// env is not modified. The result drops env's LISTEN_PID and HANDOFF_TRAMPOLINE entries (the
// trampoline sets them), and of several LISTEN_FDS or LISTEN_FDNAMES entries keeps only the last,
// as os/exec does; so appending [ListenEnv] to os.Environ() works even if the supervisor's own
// environment still holds socket-activation variables.
//
// On platforms other than Linux it returns its arguments unchanged.
func Trampoline(path string, argv, env []string) (tpath string, targv, tenv []string) {
	return trampoline(path, argv, env)
}

// TrampolineFd is Trampoline for a program the child holds open as its descriptor fd rather than
// by path: an ELF binary the supervisor opened when its generation started, handed to the child
// as fd. It always goes through the trampoline, which marks fd close-on-exec (the worker does not
// inherit it) and execs "/proc/self/fd/<fd>": the kernel opens the binary before it closes the
// close-on-exec descriptors, so the worker runs the file that was opened, whatever is at its
// path now. A script cannot run this way: its interpreter would be handed a path that is closed
// by then (fexecve's limit), so pass only ELF binaries.
//
// On platforms other than Linux it returns "/dev/fd/<fd>" and its other arguments unchanged.
func TrampolineFd(fd int, argv, env []string) (tpath string, targv, tenv []string) {
	return trampolineFd(fd, argv, env)
}

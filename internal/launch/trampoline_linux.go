package launch

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

const (
	selfExe = "/proc/self/exe"
	selfFd  = "/proc/self/fd/" // + a descriptor: TrampolineFd
)

func init() { runTrampoline() }

// runTrampoline is the child's half of Trampoline. It runs before main, in any program that
// imports this package, and does nothing unless HANDOFF_TRAMPOLINE is set.
func runTrampoline() {
	target, ok := os.LookupEnv(envTrampoline)
	if !ok {
		return
	}
	os.Unsetenv(envTrampoline)
	if _, ok := os.LookupEnv(envFds); ok {
		os.Setenv(envPid, strconv.Itoa(os.Getpid()))
	}
	if _, ok := os.LookupEnv(envWatchdogUsec); ok {
		os.Setenv(envWatchdogPid, strconv.Itoa(os.Getpid()))
	}
	if target == "" {
		return
	}
	if n, ok := strings.CutPrefix(target, selfFd); ok {
		// TrampolineFd's program: the worker must not inherit it.
		if fd, err := strconv.Atoi(n); err == nil && fd > 2 {
			unix.CloseOnExec(fd)
		}
	}
	// An upgraded supervisor runs with its handled signals blocked (see
	// supervisor's execInPlace), and a child inherits the mask: the worker
	// starts with none blocked.
	runtime.LockOSThread()
	var none unix.Sigset_t
	unix.PthreadSigmask(unix.SIG_SETMASK, &none, nil)
	err := syscall.Exec(target, os.Args, os.Environ())
	fmt.Fprintf(os.Stderr, "handoff: exec %s: %v\n", target, err)
	os.Exit(127)
}

func trampoline(path string, argv, env []string) (string, []string, []string) {
	tpath, target := selfExe, path
	if isSelf(path) {
		tpath, target = path, ""
	}
	return rewrite(path, tpath, target, argv, env)
}

func trampolineFd(fd int, argv, env []string) (string, []string, []string) {
	return rewrite("", selfExe, selfFd+strconv.Itoa(fd), argv, env)
}

// rewrite returns the spawn of tpath with HANDOFF_TRAMPOLINE=target, or of
// direct, unless empty, when there is nothing to set.
func rewrite(direct, tpath, target string, argv, env []string) (string, []string, []string) {
	needed := false                 // nothing to set if there are no sockets and no watchdog
	last := make(map[string]int, 2) // index of the last LISTEN_FDS and LISTEN_FDNAMES
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if k == envFds || k == envNames {
			last[k] = i
		}
	}
	tenv := make([]string, 0, len(env)+1)
	for i, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case envPid, envTrampoline, envWatchdogPid:
			continue
		case envFds, envNames:
			if last[k] != i {
				continue
			}
			needed = true
		case envWatchdogUsec:
			needed = true
		}
		tenv = append(tenv, kv)
	}
	if !needed && direct != "" {
		return direct, argv, tenv
	}
	tenv = append(tenv, envTrampoline+"="+target)
	return tpath, argv, tenv
}

// isSelf reports whether path is the running executable: same device and inode.
func isSelf(path string) bool {
	if !filepath.IsAbs(path) {
		return false
	}
	self, err := os.Stat(selfExe)
	if err != nil {
		return false
	}
	fi, err := os.Stat(path)
	return err == nil && os.SameFile(self, fi)
}

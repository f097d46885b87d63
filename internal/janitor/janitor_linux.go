package janitor

import (
	"os"
	"syscall"

	"github.com/handoff-dev/handoff/reap"
)

// start starts the janitor's process with files as its descriptors 0, 1, 2, in a process
// group of its own.
func start(rp *reap.Reaper, files []*os.File, env []string) (*reap.Process, error) {
	fds := make([]uintptr, len(files))
	for i, f := range files {
		rc, err := f.SyscallConn()
		if err != nil {
			return nil, err
		}
		if err := rc.Control(func(fd uintptr) { fds[i] = fd }); err != nil {
			return nil, err
		}
	}
	return rp.Start("/proc/self/exe", []string{"handoff-janitor"}, &syscall.ProcAttr{
		Env: env, Files: fds, Sys: &syscall.SysProcAttr{Setpgid: true},
	})
}

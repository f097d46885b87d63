package launch

import (
	"os"
	"syscall"
)

// sysProcAttr puts each worker in a process group of its own, so that a
// terminal's ^C reaches only the supervisor, which decides how workers stop,
// sets the worker's user and groups when cred is not nil, and places it in
// the cgroup open as cgroup (clone3's CLONE_INTO_CGROUP) unless it is nil.
func sysProcAttr(cred *Credential, cgroup *os.File) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	}
	if cgroup != nil {
		a.UseCgroupFD, a.CgroupFD = true, int(cgroup.Fd())
	}
	return a
}

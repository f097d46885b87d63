package supervisor

import "syscall"

// sysProcAttr puts each worker in a process group of its own, so that a
// terminal's ^C reaches only the supervisor, which decides how workers stop,
// and sets the worker's user and groups when cred is not nil.
func sysProcAttr(cred *Credential) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if cred != nil {
		a.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	}
	return a
}

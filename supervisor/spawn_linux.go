package supervisor

import "syscall"

// sysProcAttr puts each worker in a process group of its own, so that a
// terminal's ^C reaches only the supervisor, which decides how workers stop.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// Package launch is the supervisor's side of starting a worker: Start hands the sockets and
// files over as raw descriptors (never through File.Fd, which makes a shared socket blocking),
// in a process group and cgroup of the worker's own, from a binary pinned open when its
// generation started (OpenExe) if there is one; the environment of the systemd
// socket-activation protocol; and the re-exec trampoline that sets LISTEN_PID to the worker's
// own pid. It is plumbing, not for users: a worker reads these variables with package listener.
//
// # Why a trampoline
//
// libsystemd-style servers (gunicorn among them) take LISTEN_FDS only when LISTEN_PID equals
// their own pid, and os.StartProcess cannot set a variable after fork: the pid is known only once
// the child exists. So a worker is started as the supervisor's own binary, whose init (in this
// package) sets LISTEN_PID to its pid and execs the real program in place; the pid does not
// change. It costs one Go runtime start (about 2 ms) per spawn of a foreign program, and nothing
// when the worker is the supervisor's own binary or when there is nothing to set.
package launch

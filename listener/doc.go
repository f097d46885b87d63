// Package listener carries listening sockets from a supervisor to its workers, using the systemd
// socket-activation protocol so that any server that understands it can be a worker.
//
// # The contract
//
// A worker receives its listening sockets as file descriptors 3, 4, ... and three environment
// variables:
//
//	LISTEN_FDS=2               how many descriptors, starting at 3
//	LISTEN_FDNAMES=web:admin   their names, in order, separated by ':'
//	LISTEN_PID=4711            the worker's own pid; the variables are for no one else
//
// The sockets are shared, not copied: every worker accepts from the same kernel queue, so a
// connection made while workers come and go waits in the queue instead of being refused.
//
// # Supervisor side
//
// [Listen] binds an [Addr] (see [ParseAddr]); [Adopt] takes the sockets the supervisor itself was
// given by systemd; [FromFd] takes one descriptor, e.g. after the supervisor re-executed itself.
// Each is a [Socket]: a raw descriptor in non-blocking, close-on-exec mode. It is never wrapped in
// an [os.File] whose Fd method is called, because that would switch the open file description,
// which all workers share, to blocking mode, and an accept in an idle worker could then hang.
//
// To start a worker, pass the descriptors to [syscall.StartProcess] as files 3, 4, ... in the order
// given to [Env], add Env's entries to the worker's environment, and route the spawn through
// [Trampoline] so that LISTEN_PID is the worker's pid:
//
//	path, argv, env := listener.Trampoline(bin, argv, append(os.Environ(), listener.Env(socks)...))
//	var pid int
//	var startErr error
//	err := listener.ControlAll(socks, func(fds []uintptr) { // the fds stay open until it returns
//		files := append([]uintptr{0, 1, 2}, fds...)
//		pid, _, startErr = syscall.StartProcess(path, argv, &syscall.ProcAttr{Env: env, Files: files})
//	})
//
// # The trampoline and what it costs
//
// LISTEN_PID must equal the worker's pid (libsystemd, gunicorn and go-systemd ignore the sockets
// otherwise), but the pid is only known after fork, and neither os nor syscall can change the
// environment between fork and exec. Exec keeps the pid, so [Trampoline] rewrites a spawn to run
// the supervisor's own binary first, with HANDOFF_TRAMPOLINE naming the real target. An init
// function in this package sees that variable, removes it, sets LISTEN_PID to its pid and execs
// the target with the same arguments and environment. The cost is one more execve plus the
// start of the Go runtime in the supervisor's binary: about 2 ms per spawn on a 2-core machine
// (/bin/true took 0.6 ms to start directly, 2.6 to 3.1 ms through the trampoline; see
// BenchmarkSpawn). There is no cost when the worker is the supervisor's own binary. The init
// runs in every program that imports this package and does nothing unless HANDOFF_TRAMPOLINE is
// set.
//
// # Worker side
//
// [Inherit] returns the listeners passed to the process as [net.Listener] values, named; it
// works as well for sockets from systemd or systemd-socket-activate as for sockets from handoff.
//
// A worker tells its supervisor it serves with [Ready], the sd_notify protocol's READY=1 sent to
// $NOTIFY_SOCKET; [Notify] sends any other state (STATUS=..., STOPPING=1). Both do nothing when
// NOTIFY_SOCKET is unset, so the same binary runs unsupervised, under handoff or under systemd.
//
// The package compiles everywhere but works on Linux only: elsewhere [Listen], [Adopt], [FromFd]
// and [Inherit] return an error wrapping [ErrNotSupported], and [Trampoline] returns its
// arguments unchanged.
package listener

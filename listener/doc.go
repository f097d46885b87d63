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
// given by systemd; [AdoptFd] takes one descriptor, e.g. after the supervisor re-executed itself.
// Each is a [Socket]: a raw descriptor in non-blocking, close-on-exec mode. It is never wrapped in
// an [os.File] whose Fd method is called, because that would switch the open file description,
// which all workers share, to blocking mode, and an accept in an idle worker could then hang.
//
// To start a worker, pass the descriptors (borrowed with [Socket.Control], never through an
// os.File) to [syscall.StartProcess] as files 3, 4, ... and set LISTEN_FDS and LISTEN_FDNAMES in
// its environment. LISTEN_PID must be the worker's own pid, which is known only after fork: the
// supervisor package routes each spawn through a re-exec trampoline that sets it (about 2 ms per
// spawn of a foreign program, nothing when the worker is the supervisor's own binary).
//
// # Worker side
//
// [Inherit] returns the listeners passed to the process as [net.Listener] values, named; it
// works as well for sockets from systemd or systemd-socket-activate as for sockets from handoff.
//
// Saying "ready", "stopping" and "alive" (the sd_notify protocol) is the worker's business, not
// the socket's: see package worker.
//
// The package compiles everywhere but works on Linux only: elsewhere [Listen], [Adopt], [AdoptFd]
// and [Inherit] return an error wrapping [handoff.ErrNotSupported].
package listener

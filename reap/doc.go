// Package reap is the one owner of wait() in a handoff process: children's
// exits go in, [Status] values come out.
//
// A [Reaper] starts children ([Reaper.Start]) or takes over existing ones
// ([Reaper.Adopt]) and reports each child's exit exactly once, through the
// child's [Process]: [Process.Done], [Process.Status] and [Process.Wait].
// Signals go through a pidfd ([Process.Signal]), so a signal can never reach a
// process that merely reused a dead child's pid.
//
// # Default mode: one pidfd per child
//
// Every child is watched through its own pidfd (CLONE_PIDFD at start,
// pidfd_open for Adopt), made non-blocking and handed to Go's netpoller. One
// goroutine per child waits for the pidfd to become readable and then reaps
// exactly that pid with wait4(pid, WNOHANG). Goroutines parked in the
// netpoller hold no OS thread, so a thousand children cost a handful of
// threads; [os.Process.Wait] holds one thread per waiting child.
//
// This mode never calls wait4(-1): os/exec, or anything else in the process
// that waits for its own children, keeps working next to a Reaper.
//
// # Subreaper mode: PID 1 and containers
//
// With [WithSubreaper], [New] marks the process as a child subreaper
// (prctl PR_SET_CHILD_SUBREAPER), so orphaned descendants are re-parented to
// it, and reaps with wait4(-1, WNOHANG) until it returns 0 or ECHILD each time
// SIGCHLD rings (signal.Notify as a doorbell; signals of one kind coalesce, so
// one ring can stand for many exits), plus once at start. A reaped pid that
// was not started or adopted through the Reaper goes to the function given
// with [WithOrphanFunc], or is dropped. Start holds the Reaper's lock from
// fork to registration and the drain takes it per batch, so a child that
// exits at once is never mistaken for an orphan.
//
// This mode steals exit statuses: os/exec (or any other waiter) in the same
// process will see ECHILD for children the drain reaped first. Use at most one
// subreaper-mode Reaper per process. [Reaper.Close] stops the drain but leaves
// the subreaper flag set: orphans re-parented afterwards stay zombies until
// something reaps them. A child inherited across exec that exits before it is
// adopted is reaped by the drain like any orphan and handed to the orphan
// function; its Adopt then fails.
//
// # Why not signalfd
//
// A signalfd for SIGCHLD is not reliable in a Go program: the runtime
// unblocks SIGCHLD on every thread it creates and owns the signal handler, so
// the handler takes most deliveries before the signalfd can see them. Measured
// on Linux 6.18 with Go 1.26, a signalfd saw 5–70% of the exits.
//
// # Platforms
//
// Reaping needs Linux (pidfds, wait4 with rusage, child subreapers). On other
// systems [New] returns an error wrapping [handoff.ErrNotSupported].
package reap

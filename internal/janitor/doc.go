// Package janitor makes the workers die with the supervisor: both ends, the janitor process
// (runJanitor, started from this package's init) and the supervisor's handle on it (Janitor).
//
// A worker written in Go watches the liveness pipe and exits when the supervisor is gone; a
// program that knows nothing of handoff (gunicorn, uvicorn, a shell script) would keep serving
// on the port, and its own children with it. So every supervisor starts one janitor: its own
// binary re-executed, in a process group of its own, holding the read end of a pipe whose
// write end only the supervisor holds. The supervisor tells it "+PID" for every worker it
// starts and "-PID" for every worker it reaps; when the pipe reads end-of-file (the supervisor
// died, even by SIGKILL) the janitor stops each listed worker's process group as the
// supervisor would have: the stop signal, then SIGKILL after the stop timeout; and exits.
//
// An in-place upgrade keeps the pipe open across the exec, so the janitor neither notices nor
// kills anything, and the new program takes it over (Exec, Inherited). PR_SET_PDEATHSIG was
// the other candidate: it fires when the *thread* that forked the worker ends
// (golang/go#27505), reaches only the worker and not its children, and an exec ends every
// thread but one.
package janitor

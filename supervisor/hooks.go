package supervisor

import (
	"os"

	"github.com/handoff-dev/handoff/reap"
)

// Hooks let a program take part in the worker life cycle. Every hook is
// called on the supervisor's run goroutine (the one that owns the worker
// table), without any lock held; while a hook runs the supervisor does
// nothing else, so a hook must return promptly. A nil hook is skipped.
type Hooks struct {
	// BeforeSpawn is called before each worker starts, with the spawn it is
	// about to make. It may change the path, arguments, environment,
	// directory and files. An error cancels this start, which then counts as
	// a start failure (the slot is retried after the backoff).
	BeforeSpawn func(sp *Spawn) error

	// AfterSpawn is called once the worker process exists.
	AfterSpawn func(w WorkerInfo)

	// OnReady is called when a worker becomes ready (see Readiness); during
	// a roll, before the worker it replaces is retired.
	OnReady func(w WorkerInfo)

	// OnExit is called for every worker exit the supervisor did not ask
	// for, with its status. Returning false vetoes the restart: the slot
	// stays empty until the next roll. It is not called for workers that
	// exit because the supervisor is stopping them.
	OnExit func(w WorkerInfo, st reap.Status) (restart bool)
}

// Spawn describes one worker start. BeforeSpawn may change any field.
type Spawn struct {
	// Path is the program to run; Args its argv, starting with the
	// program's name; Dir its working directory ("" means the supervisor's).
	Path string
	Args []string
	Dir  string

	// Env is the complete environment. The supervisor has already added the
	// worker's identity (HANDOFF_WORKER, HANDOFF_GENERATION,
	// HANDOFF_SUPERVISOR_PID) and the socket-activation variables
	// (LISTEN_FDS, LISTEN_FDNAMES; LISTEN_PID is set to the worker's own pid
	// as it starts).
	Env []string

	// Stdin, Stdout and Stderr become the worker's fds 0, 1 and 2 (default:
	// /dev/null, and the supervisor's own stdout and stderr). The listening
	// sockets follow as fd 3, 4, …, then ExtraFiles. Files are handed over
	// as raw descriptors, so their blocking mode is never changed.
	Stdin, Stdout, Stderr *os.File
	ExtraFiles            []*os.File

	// Credential, if not nil, is the user and groups the worker runs as
	// (WithCredential); the supervisor keeps its own, and the sockets it
	// bound with them (a port below 1024 as root).
	Credential *Credential

	// Worker is the slot index and Generation the generation of the worker
	// being started; changing them has no effect.
	Worker     int
	Generation uint64
}

package supervisor

import (
	"os"
	"runtime"
	"time"

	"github.com/handoff-dev/handoff/reap"
)

// Hooks let a program take part in the worker life cycle. A nil hook is
// skipped. Hooks are called one at a time, in the order of the events, and
// without any lock held, each on a goroutine that the supervisor's run
// goroutine starts for it and waits for: while a hook runs the run
// goroutine changes nothing, so a hook sees the table as it is and must
// return promptly.
//
// A hook may call back into the supervisor. From the hook's own goroutine
// (the supervisor knows it by its OS thread, which the goroutine holds while
// the hook runs), Stats answers at once with the table as the hook sees it;
// Roll, Upgrade, Scale and ScaleBy return ErrInHook and change nothing
// (they would wait for the run goroutine, which waits for the hook); Shutdown
// and Close begin the stop, which goes on once the hook returns, and return
// ErrInHook. A call from any other goroutine while a hook runs waits for the
// hook and the event that called it, and is then served. So a hook must not
// wait for a goroutine of its own that calls in: start a roll or a scale
// from a hook as go s.Roll(ctx), and do not wait for it.
type Hooks struct {
	// BeforeSpawn is called before each worker starts, with the spawn it is
	// about to make. It may change the path, arguments, environment,
	// directory and files. An error cancels this start, which then counts as
	// a start failure (the slot is retried after the backoff).
	BeforeSpawn func(sp *Spawn) error

	// AfterSpawn is called once the worker process exists and holds its
	// slot (Stats from the hook lists it in Workers, Starting).
	AfterSpawn func(w WorkerInfo)

	// OnReady is called when a worker becomes ready (see Readiness); during
	// a roll, before the worker it replaces is retired.
	OnReady func(w WorkerInfo)

	// OnExit is called for every worker exit the supervisor did not ask
	// for, with its status. Returning false vetoes the restart: the slot
	// stays empty until the next roll, which fills it. It is not called for
	// workers that exit because the supervisor asked them to (AfterExit is).
	OnExit func(w WorkerInfo, st reap.Status) (restart bool)

	// AfterExit is called for every worker exit, those the supervisor asked
	// for included (retired by a roll, a scale-down or a failed start;
	// stopped with the supervisor), after OnExit.
	AfterExit func(e ExitEvent)

	// OnRollStart is called when a roll starts; OnRollEnd when it ends,
	// with its result (completed, rolled back, failed) and why it failed.
	OnRollStart func(e RollEvent)
	OnRollEnd   func(e RollEvent)

	// OnCanary is called for each canary of a roll (see WithCanary) that
	// stayed up and ready for the accept window, before its generation is
	// accepted. An error vetoes the generation: the roll fails with it as
	// the reason, and rolls back.
	OnCanary func(w WorkerInfo) error
}

// ExitEvent is one worker's exit.
type ExitEvent struct {
	Worker WorkerInfo
	Status reap.Status
	// Asked tells whether the supervisor asked the worker to exit; Why
	// says why it did ("replaced by a new generation", "scaled down",
	// "stopping", …), or is "" for an exit it did not ask for.
	Asked bool
	Why   string
}

// RollEvent describes a roll: from the generation serving when it started
// to Generation. Result, Err and Took are set when it ends.
type RollEvent struct {
	Generation, From uint64
	Result           RollResult
	Err              error
	Took             time.Duration
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

// runHook calls a hook, f, on a goroutine of its own, locked to its OS
// thread while f runs, and waits for it. A call back into the supervisor
// from that goroutine is found by its thread (see Supervisor.inHook), with
// no goroutine id: Stats publishes the table as the hook sees it and
// answers with it (the run goroutine waits for the hook, so the table
// holds still; a snapshot per hook call, taken whether or not the hook
// asks, made N workers' start O(N²) with hooks installed), the others
// refuse with ErrInHook. Requests from other goroutines wait to be taken,
// as during any event, until the hook and the event that called it are
// done.
func (t *table) runHook(f func()) {
	done := make(chan struct{})
	t.s.hooked = t
	go func() {
		defer close(done)
		// No other goroutine runs on this thread until UnlockOSThread, so
		// its id names the hook's goroutine for as long as f runs.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t.s.hookThread.Store(int64(threadID()))
		defer t.s.hookThread.Store(0)
		f()
	}()
	<-done
	t.s.hooked = nil
}

func (t *table) hookRoll(e RollEvent) {
	if h := t.o.hooks.OnRollStart; h != nil {
		t.runHook(func() { h(e) })
	}
}

func (t *table) hookRollEnd(e RollEvent) {
	if h := t.o.hooks.OnRollEnd; h != nil {
		t.runHook(func() { h(e) })
	}
}

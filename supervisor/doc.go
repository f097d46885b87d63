// Package supervisor keeps N worker processes serving on shared listening
// sockets, and replaces them without refusing a connection or failing a
// request: on a crash, on a rolling restart, and when the supervisor itself
// is upgraded in place.
//
// The supervisor owns the sockets and is never in the data path: every
// worker accepts from the same kernel queue. Workers get the sockets as fd
// 3, 4, … with the systemd socket-activation variables (see package
// listener), so any server that speaks that protocol can be a worker; a Go
// worker is written with package worker, which imports nothing from this
// one.
//
// # One binary, both sides
//
// [MainHTTP] (or [Main] for any [worker.Handler]) is the whole of main for
// a program that is both: run by hand it becomes the supervisor of its own
// binary, re-executed as its workers; run by its supervisor it is a worker.
//
//	func main() {
//		err := supervisor.MainHTTP(context.Background(), &http.Server{Handler: mux},
//			supervisor.WithListen("tcp://127.0.0.1:8080"), supervisor.WithWorkers(4))
//		if err != nil {
//			log.Fatal(err)
//		}
//	}
//
// What main does before Main runs in the supervisor and in every worker:
// guard one-time set-up with worker.IsWorker. To supervise another program
// (a Python server, a separate Go binary), call [New] with its [Command] and
// [Supervisor.Run].
//
// # Generations, readiness and rolls
//
// Workers are numbered by slot (0 to N-1) and belong to a generation,
// starting at 1. A worker is ready, as [Readiness] says: once started
// (the default for New), when it sends READY=1 to $NOTIFY_SOCKET (the
// default for Main; worker.Run sends it when the handler first accepts), or
// after a delay. One not ready within the ready timeout is killed.
//
// A roll ([Supervisor.Roll], SIGHUP) starts the next generation a surge of
// workers at a time and retires an old worker (the stop signal, then
// SIGKILL after the stop timeout) only once its replacement is ready, so
// that N ready workers serve throughout. If a new worker exits or is not
// ready in time, the roll stops, the old generation keeps serving, and the
// error is logged and returned. Rolls asked for during a roll are coalesced
// into one that follows it.
//
// A generation is pinned when it starts: its program's symbolic links are
// resolved and, for an ELF binary, the file is kept open and its workers
// are started from that descriptor. A new build renamed over the program
// (or a release symlink switched) is what the next roll runs; the restarts
// of the serving generation and the way back of a failed roll still run the
// build they started with, across an upgrade in place too. A script is
// pinned by its resolved path only (an interpreter cannot be handed a
// descriptor that closes at exec).
//
// A worker that exits unasked is restarted: at once if it had been up for
// the minimum uptime, else after a backoff that doubles with each start
// failure of its slot. [Supervisor.Scale] (SIGTTIN, SIGTTOU) changes N.
//
// # Upgrade in place
//
// [Supervisor.Upgrade] (SIGUSR2) runs the binary at the upgrade path once in
// a check mode, then execs it in place: the same pid, the listening sockets,
// the notify socket and the running workers pass to the new program, which
// must build its supervisor the same way (Main does). The package's init
// answers the check and catches signals that arrive before Run; a
// program that uses this package therefore runs that init, and a worker
// binary that does not want it imports only package worker.
//
// # Signals
//
// With [WithSignals] (which Main sets), Run handles the process's signals:
//
//	SIGHUP            roll to a new generation
//	SIGUSR2           upgrade in place, same pid
//	SIGTERM, SIGINT   stop: the stop signal to every worker, SIGKILL after the
//	                  stop timeout; a second one kills at once
//	SIGTTIN, SIGTTOU  one worker more, one fewer
//
// Under systemd, the supervisor sends READY=1 when its first generation is
// ready, RELOADING=1 and READY=1 around a roll, and STOPPING=1 when it
// stops.
//
// # Hooks and goroutines
//
// One goroutine, the one running Run, owns the worker table; the methods
// of [Supervisor] send it requests and are safe from any goroutine.
// [Hooks] are called one at a time, in the order of the events, without a
// lock held; the run goroutine waits for each and changes nothing
// meanwhile, so a hook must return promptly. Each hook runs on a goroutine
// of its own, locked to its OS thread while it runs, and that is how the
// supervisor knows a call back from it: Stats answers at once, with the
// table as the hook sees it; Roll, Upgrade, Scale and ScaleBy return
// [ErrInHook] and change nothing; Shutdown and Close begin the stop and
// return ErrInHook. Calls from other goroutines wait for the hook and are
// then served. So from a hook, start a roll or a scale on a goroutine of
// its own, and do not wait for it.
//
// # Observing
//
// [Supervisor.Stats] returns one snapshot of the supervisor: the workers,
// slots and sockets, the last roll, and the counters (starts, restarts,
// exits by reason, rolls, upgrades, dropped notify messages, durations)
// that an in-place upgrade hands on. Stats waits for the event the run
// goroutine is handling, so it shows the outcome of every event before it
// (from a hook: the table as the hook sees it). The handoff command's
// status and package metrics are both built from it.
//
// # Logs
//
// With no logger given, the supervisor logs at info and above to stderr:
// console lines on a terminal, JSON lines otherwise. Workers starting,
// becoming ready and exiting, rolls and their failures are at info and
// above; per-process reaping detail is at debug. [WithLogger] takes a
// *zap.Logger, [WithSlogHandler] a log/slog handler.
//
// # Options
//
//   - Workers and sockets: [WithWorkers], [WithListen], [WithSockets],
//     [WithReusePort] (a socket per worker slot instead of one shared).
//   - Readiness and rolls: [WithReadiness], [WithReadyTimeout], [WithSurge],
//     [WithNotifyAccessAll].
//   - Restarts: [WithMinUptime], [WithBackoff], [WithMaxStartFailures].
//   - Stopping: [WithStopSignal], [WithStopTimeout].
//   - Health: [WithWatchdog], [WithWatchdogSignal], [WithMaxLifetime].
//   - The process: [WithSignals], [WithUpgradePath], [WithSubreaper].
//   - Observing: [WithLogger], [WithSlogHandler], [WithHooks], [WithMetrics],
//     [WithHealth]; [Supervisor.Stats] for a snapshot.
//
// Elsewhere than on Linux, Run returns an error wrapping
// handoff.ErrNotSupported.
package supervisor

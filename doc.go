// Package handoff runs servers without downtime. A supervisor process owns
// the listening sockets and keeps N worker processes serving on them; the
// kernel spreads connections over the workers, so the supervisor is never in
// the data path. It reaps every exit and restarts crashed workers with
// backoff.
//
// # Layout
//
// Data flows one way: listener, reap and worker never import supervisor,
// and a worker binary that imports only worker links none of the
// supervisor's machinery.
//
//   - listener: the sockets. Parse and bind addresses (ParseAddr, Listen),
//     adopt the ones systemd passed (Adopt, AdoptFd); in a worker, Inherit
//     them by name.
//   - reap: the one owner of wait(2): children started or adopted, each
//     exit reported once, signals through pidfds.
//   - worker: everything a worker process does: worker.Run (any handler;
//     READY=1 on its first Accept), worker.RunHTTP (net/http, drained
//     without failing a request), Self, the sd_notify client (Ready,
//     Stopping, Watchdog) and the liveness pipe.
//   - supervisor: the worker table, generations, readiness, rolls,
//     restarts, hooks, signals and the in-place upgrade; supervisor.MainHTTP
//     and supervisor.Main are the one-call entry points of a binary that is
//     both supervisor and worker.
//   - internal: plumbing the supervisor side shares (the re-exec trampoline
//     that sets LISTEN_PID, the default logger), not for users.
//   - cmd/handoff: the CLI that runs any existing server under a supervisor.
//   - example: a supervised HTTP server (go run ./example) and example/echo,
//     a worker-only TCP echo server; example/app.py, the WSGI app of the
//     CLI examples.
//   - docs: deployment files; bench: benchmarks and side-by-side
//     comparisons, a module of its own.
//
// # The fd contract
//
// A worker is started with the systemd socket-activation protocol, so any
// server that speaks it runs under handoff unchanged:
//
//   - fds 0, 1, 2: /dev/null, and the supervisor's stdout and stderr;
//   - fd 3, 4, …: the listening sockets, in the order they were configured,
//     in non-blocking mode;
//   - LISTEN_FDS: how many sockets; LISTEN_FDNAMES: their names, separated
//     by ':' ("unknown" for an unnamed one); LISTEN_PID: the worker's own pid
//     (set by a re-exec trampoline, since the pid is only known after fork);
//   - HANDOFF_WORKER (slot index, 0 to N-1), HANDOFF_GENERATION and
//     HANDOFF_SUPERVISOR_PID: the worker's identity.
//
// Each worker runs in a process group of its own, so a terminal's ^C reaches
// only the supervisor, which then stops the workers in order.
//
// # Generations, readiness and rolls
//
// Workers belong to a generation. A roll (SIGHUP, Supervisor.Roll) starts
// workers of the next generation a surge at a time and retires an old worker
// only once its replacement is ready, so N workers serve throughout. A
// worker is ready when it sends READY=1 to $NOTIFY_SOCKET (the sd_notify
// protocol; worker.Ready in Go), once spawned, or after a delay, as
// configured. A new generation that fails stops the roll and the old one
// keeps serving. An in-place upgrade (SIGUSR2, Supervisor.Upgrade) checks the
// new binary, then execs it with the same pid; the new program adopts the
// sockets and the running workers.
//
// # Signals
//
//	signal        supervisor (supervisor.Main)            worker (worker.Run)
//	SIGHUP        rolling restart                         -
//	SIGUSR2       upgrade in place, same pid              -
//	SIGTERM,      stop gracefully: the stop signal to     drain: finish in-flight requests,
//	SIGINT        workers, SIGKILL after the stop         answer later ones with
//	              timeout; a second one kills at once     "Connection: close", then exit 0
//	SIGTTIN/TTOU  one worker more / fewer                 -
//
// # Under systemd
//
// The supervisor can itself be socket-activated: it adopts the sockets
// systemd passes it (listener.Adopt) and hands them on to its workers.
//
//	[Unit]
//	Description=my server under handoff
//
//	[Service]
//	Type=notify
//	ExecStart=/usr/local/bin/myserver -listen tcp://0.0.0.0:8080 -workers 4
//	ExecReload=/bin/kill -HUP $MAINPID
//	KillMode=mixed
//	TimeoutStopSec=40
//
//	[Install]
//	WantedBy=multi-user.target
//
// The supervisor sends READY=1 when its first generation is ready,
// RELOADING=1 and READY=1 around a roll, and STOPPING=1 when it stops.
// KillMode=mixed sends SIGTERM to the supervisor alone, which drains its
// workers, and SIGKILL to every process of the unit if it overruns.
package handoff

// Command handoff runs an existing server without downtime: it owns the
// listening sockets and keeps N copies of the server running on them as
// workers, replacing them a few at a time on a rolling restart, so that no
// connection is refused and no request fails.
//
//	go install github.com/handoff-dev/handoff/cmd/handoff@latest
//	handoff -listen tcp://127.0.0.1:8080 -workers 4 -ready notify -pidfile /tmp/app.pid -- gunicorn app:app
//
// The server gets its sockets the systemd way (fd 3, 4, … with LISTEN_FDS,
// LISTEN_FDNAMES and LISTEN_PID, its own pid) and NOTIFY_SOCKET for
// sd_notify, so anything that supports socket activation runs under handoff
// unchanged: gunicorn, uvicorn --fd 3, a Go worker using worker.Run or
// listener.Inherit, servers built on libsystemd.
//
// # Flags
//
//	-listen ADDR            listen on ADDR, repeatable, in fd order: tcp://host:port,
//	                        tcp4://, tcp6://, unix:///path, unix://@abstract or
//	                        host:port, each optionally name= (its LISTEN_FDNAMES name);
//	                        optional when systemd passes handoff its sockets
//	-workers N              how many workers (default 1)
//	-ready MODE             when a new worker is ready: notify (READY=1), start,
//	                        or delay:DURATION (default start)
//	-ready-timeout D        how long a new worker may take to be ready (default 1m)
//	-accept-window D        how long a roll's canaries must stay up after ready before
//	                        the new generation is accepted (default 3s)
//	-canary N               how many new workers a roll watches first (default 1)
//	-probe URL              http://HOST:PORT/PATH or tcp://HOST:PORT the canaries must pass
//	-probe-exec "CMD ARGS"  a command run per canary (HANDOFF_PROBE_PID); exit 0 passes
//	-stop-timeout D         how long a worker may drain before SIGKILL (default 30s)
//	-stop-signal SIG        the signal that asks a worker to drain (default TERM)
//	-watchdog D             require WATCHDOG=1 from each worker this often (default off)
//	-pidfile PATH           write handoff's pid there; the control socket is then
//	                        PATH.ctl/control.sock unless -control says otherwise
//	-control PATH           the control socket (mode 0600, in a directory of mode 0700)
//	-log-format FORMAT      console or json (default: console on a terminal, else json)
//	-init                   an init's duties: reap every orphan, stop whole trees
//	                        (on by itself as PID 1; -subreaper is its old name)
//	-cgroups auto|on|off    a cgroup v2 per worker where handoff's is writable (default auto)
//	-remap-exit FROM=TO     exit with TO instead of FROM, repeatable
//	-surge N                new workers a roll starts at once (default 1)
//	-min-uptime D           a worker that exits sooner failed to start (default 1s)
//	-backoff D              delay after a start failure, doubling (default 100ms)
//	-backoff-max D          the longest backoff (default 10s)
//	-max-start-failures N   give up after N start failures in a row (default 0: never)
//	-max-lifetime D         replace each worker after D (default 0: never)
//	-lifetime-jitter D      a random part of up to D added to -max-lifetime
//	-env KEY=VALUE          set in the workers' environment, repeatable
//	-chdir DIR              the workers' working directory
//	-user USER, -group G    run the workers as USER and G
//	-shutdown-delay D       fail /readyz for D before a stop signals any worker
//	-health ADDR            serve /livez and /readyz on ADDR
//	-version                print the version
//
// handoff -h prints each flag with an example.
//
// # Signals
//
// SIGHUP rolls the workers to a new generation: a new worker starts, and the
// one it replaces is asked to stop (the stop signal) only once the new one is
// ready. SIGUSR2 upgrades handoff itself in place: the binary at its path is
// checked, then executed with the same pid and arguments, and it adopts the
// sockets and the running workers. SIGTERM or SIGINT stops: every worker gets
// the stop signal, then SIGKILL after the stop timeout; a second one kills at
// once. SIGTTIN and SIGTTOU add and remove a worker.
//
// # Control subcommands
//
//	handoff status  -pidfile PATH     workers, slots, sockets, and the counters /metrics has
//	handoff reload  -pidfile PATH     roll, and wait until the new generation serves
//	handoff upgrade -pidfile PATH     upgrade in place, and check that it happened
//	handoff scale N -pidfile PATH     run N workers (0 pauses); +N or -N to add or remove
//
// Each finds the running handoff through its pid file, or takes -control
// PATH, and talks to it over the control socket; -json prints the answer as
// JSON. The protocol is one request line ("status", "reload", "upgrade",
// "scale 4") and one line of JSON in answer; a successful upgrade does not
// answer, since the process execs the new program, which recreates the
// control socket at the same path.
//
// # Exit status
//
// 0 after a requested stop (or a control command that succeeded), 2 for a
// bad command line, with a message naming the flag or value, and 1 for
// anything else.
//
// # Under systemd
//
// handoff sends READY=1 once its first workers are ready (Type=notify),
// RELOADING=1 and READY=1 around a roll, and adopts the sockets of a .socket
// unit, which then replaces -listen. See README.md for the unit files.
package main

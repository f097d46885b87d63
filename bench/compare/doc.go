// Command compare runs handoff and its peers side by side, on one machine in
// one invocation, and writes the results as Markdown tables and SVG plots
// (drawn with gonum.org/v1/plot):
//
//	cd bench && go run ./compare            # everything: about 7-9 minutes on 2 cores
//	go run ./compare -only restarts -rounds 1
//
// Scenarios (each subject runs once per round, rounds interleaved A B A B):
//
//  1. throughput: handoff's example with 2 workers on one shared socket,
//     and with -reuseport (a socket per worker slot) where the example has
//     that flag, against one Go process (GOMAXPROCS=2) serving the same
//     handler and 2 Go processes on SO_REUSEPORT sockets.
//  2. restarts: 10 restarts under 64 keep-alive clients that never retry,
//     each sent once the previous one completed (-pace completion; at
//     least -every apart): handoff (SIGHUP, a rolling restart; and
//     handoff -reuseport), tableflip (SIGHUP, an upgrade), tableflip with
//     handoff's drain (worker.ServeAndDrain instead of Shutdown),
//     gunicorn gthread (SIGHUP), nginx (nginx -s reload). Failures by
//     kind, latency and throughput, restarts completed and folded, each
//     restart's own duration.
//  3. upgrades: 10 in-place upgrades of the supervisor under the same load:
//     handoff (SIGUSR2), tableflip (its upgrade is its restart; both
//     drains), nginx's
//     binary upgrade (USR2, WINCH, QUIT; nginx then runs as a daemon,
//     because a foreground master refuses USR2).
//  4. spawn and reap: workers spawned-to-ready per second, handoff against
//     os.StartProcess of the same binary plus an accepted request; reap
//     latency, paced and under a flood of exits, handoff's reap package
//     against os.Process.Wait; the supervisor's threads and RSS at 10, 100
//     and 1,000 workers.
//  5. traffic (opt-in, -only traffic, about 3 minutes): the clients a
//     drain can hurt, at handoff, tableflip and nginx through restarts:
//     pooled POSTers plus clients polling at periods over 0.5-3 s; Go's
//     HTTP/2 client (h2c); 3 s streams, counted complete or cut. Failed
//     requests per restart, min/median/max over rounds.
//  6. reconnects (opt-in, -only reconnects, about 2 minutes): issue 20's
//     figure. 64 raw keep-alive clients that dial again only when their
//     connection ended, through 10 restarts of each subject of restarts:
//     reconnects per restart = (dials - clients) / restarts, failed
//     requests, and the same count from the kernel (/proc/net/tcp). Then
//     the same through a TLS tunnel in the harness, one plaintext
//     connection to the subject per client connection: handshakes per
//     restart and their CPU time, each side's, on a locked thread.
//
// Every ratio is handoff's figure ÷ the other subject's, as the ratio of
// the means over rounds with the lowest and highest ratio of one round.
//
// It builds what it runs (the example, bench/peers/goserver,
// bench/peers/tableflip), installs gunicorn and nginx from Debian's packages
// when they are missing (apt-get, as root; -no-install to skip; a peer that
// cannot be had is skipped with a message), and writes BENCHMARKS.md,
// restarts.svg and upgrades.svg into a fresh directory,
// results-<UTC time>-<commit>[-<opt-in scenario>], or into -out; never
// over the committed results/ unless -out says so, and never over a
// report of other scenarios. A scenario that would not fit in -limit is
// skipped and named at the top of the report.
//
// Traffic goes only to 127.0.0.1. Every wait is bounded, and the whole run
// by -limit. The harness is a child subreaper: whatever a subject leaves
// behind becomes its child and is killed and reaped by pid when the subject
// stops, and again at exit.
//
// Linux only, like the supervisor.
package main

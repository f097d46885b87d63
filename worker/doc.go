// Package worker is everything a worker process does under a handoff
// supervisor (or under systemd): take its listening sockets, say when it is
// ready, stopping or alive, watch that its supervisor still lives, and drain
// without failing a request when it is retired.
//
// A worker binary needs nothing else: one that imports only this package
// (and listener) links none of the supervisor's machinery, and runs the
// same unsupervised, under the handoff CLI, under systemd's
// socket activation, or as the worker half of supervisor.Main.
// example/echo in the repository is one (a TCP echo server); its test
// checks with go list -deps that it links no supervisor code.
//
//	func main() {
//		srv := &http.Server{Handler: mux}
//		if err := worker.RunHTTP(context.Background(), srv); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// # Life of a worker
//
// [Run] takes the inherited sockets (fd 3, 4, … named by LISTEN_FDNAMES,
// see listener.Inherit) and calls the [Handler] with them and a context.
//
//   - Ready: READY=1 goes to $NOTIFY_SOCKET the first time the handler
//     calls Accept on any listener, so a worker is reported ready when it
//     serves, never before, and a handler cannot forget to say it. A
//     handler that serves the descriptors some other way calls [Ready].
//   - Stop: SIGTERM or SIGINT cancels the context; the handler stops
//     accepting, finishes what it has and returns. [HTTP] and
//     [ServeAndDrain] do this for net/http without failing a request.
//   - Watchdog: with WATCHDOG_USEC set, Run sends WATCHDOG=1 at half the
//     interval ([Watchdog]).
//   - Liveness: the supervisor holds the write end of a pipe whose read end
//     the worker inherits ($HANDOFF_LIVENESS_FD). When the supervisor dies,
//     even by SIGKILL, the pipe reads end-of-file: Run cancels the context
//     and ends the process after [LivenessGrace].
//
// [Self] tells the worker its slot, generation and supervisor.
//
// # Logs
//
// The worker shares its supervisor's stderr. The handoff CLI's supervisor
// tells its workers its log format in $HANDOFF_LOG_FORMAT ([EnvLogFormat]:
// "json" or "console"), and the drain and Run's own lines (the supervisor
// is gone, a watchdog error) are written in it: the same keys ("ts",
// "level", "msg"), time, level spelling, and durations in seconds, so that
// the stream has one format. [WithDrainLogger] overrides it for the drain;
// without the variable the drain logs to slog.Default(), and Run's lines
// are plain text.
//
// # Signals
//
//	SIGTERM, SIGINT   drain: finish in-flight requests, answer later ones with
//	                  "Connection: close", then exit 0; [Draining] fires
//	second one        hurry: the drain deadline is now (request contexts are
//	                  cancelled, idle connections closed)
//
// # Draining
//
// [ServeAndDrain] never closes an idle keep-alive connection before its
// drain deadline (default: 3/4 of the supervisor's stop timeout, from
// [EnvStopTimeout]): an idle close always races a client that is reusing
// the connection. Handlers learn that the drain started from
// [Draining](r.Context()), and that the deadline came from r.Context().
//
// Elsewhere than on Linux, [Notify] and [Run] return errors wrapping
// handoff.ErrNotSupported.
package worker

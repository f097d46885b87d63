// Command example is a supervised HTTP server: a supervisor that keeps
// -workers copies of this same binary serving on the -listen sockets.
//
//	go run ./example -listen 127.0.0.1:8080 -workers 2
//
// Every response is 200 and names the worker that served it in the headers
// X-Worker-Pid, X-Generation and X-Version; ?sleep=DUR (up to a minute)
// delays it. SIGHUP rolls the workers to a new
// generation without failing a request; SIGUSR2 replaces the supervisor
// in place with the binary now at its path (same pid, workers kept). With -worker the binary is only a worker:
// it serves on sockets it inherited, from handoff or from systemd:
//
//	systemd-socket-activate -l 127.0.0.1:8080 ./example -worker
//
// SIGINT or SIGTERM stops it gracefully: in-flight requests finish, then
// every process exits with status 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/logging"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

// version is set at build time (-ldflags "-X main.version=…") and sent in
// the X-Version header, so a rebuilt binary can be told from the old one.
var version = "dev"

// listenFlag collects repeated -listen flags.
type listenFlag []string

func (l *listenFlag) String() string     { return strings.Join(*l, ",") }
func (l *listenFlag) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var listen listenFlag
	flag.Var(&listen, "listen", "address to serve on, repeatable: host:port, tcp://, tcp4://, tcp6://, unix:///path, unix://@name, each optionally name=… (default 127.0.0.1:8080)")
	workers := flag.Int("workers", 2, "number of worker processes")
	workerOnly := flag.Bool("worker", false, "run as a worker on inherited sockets (from handoff or systemd socket activation)")
	minUptime := flag.Duration("min-uptime", time.Second, "how long a worker must stay up for its start to count as a success")
	flag.Parse()
	if len(listen) == 0 {
		listen = listenFlag{"127.0.0.1:8080"}
	}

	ctx := context.Background()
	var err error
	if *workerOnly {
		err = worker.RunHTTP(ctx, &http.Server{Handler: handler()})
	} else {
		err = supervisor.MainHTTP(ctx, &http.Server{Handler: handler()},
			supervisor.WithListen(listen...),
			supervisor.WithWorkers(*workers),
			supervisor.WithMinUptime(*minUptime),
		)
	}
	if err != nil {
		// In the supervisor's own log format, which bench/compare reads.
		logging.Default().Error("exiting", zap.Error(err))
		os.Exit(1)
	}
}

// handler answers every request with 200 and the serving worker's identity.
func handler() http.Handler {
	pid := strconv.Itoa(os.Getpid())
	gen := "0"
	if id, ok := worker.Self(); ok {
		gen = strconv.FormatUint(id.Generation, 10)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// ?sleep=DUR holds the request, to have some in flight.
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, time.Minute)):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("X-Worker-Pid", pid)
		w.Header().Set("X-Generation", gen)
		w.Header().Set("X-Version", version)
		fmt.Fprintf(w, "hello from worker %s (generation %s)\n", pid, gen)
	})
}

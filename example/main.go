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
//
// Protocols: -tls-cert FILE -tls-key FILE serves HTTPS, with HTTP/2 by
// ALPN; -h2c serves cleartext HTTP/2 ("prior knowledge") beside HTTP/1.1.
// Long-lived requests show how a retired worker ends them:
//
//   - /stream?n=N&every=DUR sends N chunked lines, one every DUR, then a
//     final line "done N". A stream still running at its worker's drain
//     deadline ends early with a final line "cut after I of N lines".
//   - /ws is a WebSocket echo that closes with 1001 (going away) as soon as
//     its worker starts to drain.
//
// -drain-timeout sets the workers' drain deadline (default: 3/4 of the
// supervisor's -stop-timeout). A roll waits -ready-timeout for each new
// worker to be ready, and accepts the new generation once its canary has
// stayed up for -accept-window; else it rolls back.
//
// For tests only, a build can be made bad on purpose, so that a deploy of
// it can be seen to fail safely: -ldflags "-X main.fault=crash" makes every
// worker exit 1 at start, "hang" makes it never ready (it never accepts),
// "flap" makes it exit 1 300ms after it became ready. The supervisor of a
// bad build is unaffected.
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/logging"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

// version is set at build time (-ldflags "-X main.version=…") and sent in
// the X-Version header, so a rebuilt binary can be told from the old one.
var version = "dev"

// fault, set at build time only (-ldflags "-X main.fault=…"), makes this a
// bad build's worker, for tests: see the package documentation.
var fault string

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
	stopTimeout := flag.Duration("stop-timeout", 30*time.Second, "how long a stopping worker may drain before SIGKILL")
	drainTimeout := flag.Duration("drain-timeout", 0, "the workers' drain deadline (default 3/4 of -stop-timeout)")
	tlsCert := flag.String("tls-cert", "", "serve HTTPS (HTTP/2 by ALPN) with this PEM certificate chain (needs -tls-key)")
	tlsKey := flag.String("tls-key", "", "the PEM private key of -tls-cert")
	h2c := flag.Bool("h2c", false, "serve cleartext HTTP/2 (prior knowledge) beside HTTP/1.1")
	maxDraining := flag.Int("max-draining", 8, "how many generations may drain at once before the oldest is hurried (0: no cap)")
	readyTimeout := flag.Duration("ready-timeout", 60*time.Second, "how long a new worker may take to be ready (to accept)")
	handover := flag.Bool("handover", true, "hand draining workers' idle connections to the new generation instead of closing them")
	acceptWindow := flag.Duration("accept-window", time.Second, "how long a roll's canary must stay up before its generation is accepted")
	reusePort := flag.Bool("reuseport", false, "give each worker slot a socket of its own for every TCP address (SO_REUSEPORT) instead of one shared socket")
	flag.Parse()
	if len(listen) == 0 {
		listen = listenFlag{"127.0.0.1:8080"}
	}

	srv := &http.Server{Handler: handler()}
	if *h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetHTTP2(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	var drain []worker.DrainOption
	if *tlsCert != "" || *tlsKey != "" {
		drain = append(drain, worker.WithTLSFiles(*tlsCert, *tlsKey))
	}
	if *drainTimeout > 0 {
		drain = append(drain, worker.WithDrainTimeout(*drainTimeout))
	}

	ctx := context.Background()
	h, err := faulty(worker.HTTP(srv, drain...), *workerOnly || worker.IsWorker())
	if err != nil {
		logging.Default().Error("exiting", zap.Error(err))
		os.Exit(2)
	}
	if *workerOnly {
		err = worker.Run(ctx, h)
	} else {
		err = supervisor.Main(ctx, h,
			supervisor.WithListen(listen...),
			supervisor.WithWorkers(*workers),
			supervisor.WithMinUptime(*minUptime),
			supervisor.WithStopTimeout(*stopTimeout),
			supervisor.WithMaxDraining(*maxDraining),
			supervisor.WithReadyTimeout(*readyTimeout),
			supervisor.WithAcceptWindow(*acceptWindow),
			supervisor.WithHandover(*handover),
			supervisor.WithReusePort(*reusePort),
		)
	}
	if err != nil {
		// In the supervisor's own log format, which bench/compare reads.
		logging.Default().Error("exiting", zap.Error(err))
		os.Exit(1)
	}
}

// faulty returns h as the build's fault makes it (see fault). The fault
// acts in a worker only; crash acts at once, before h is called.
func faulty(h worker.Handler, isWorker bool) (worker.Handler, error) {
	switch fault {
	case "":
		return h, nil
	case "crash", "hang", "flap":
	default:
		return nil, fmt.Errorf("unknown fault %q built in: want crash, hang or flap", fault)
	}
	if !isWorker {
		return h, nil
	}
	switch fault {
	case "crash":
		fmt.Fprintln(os.Stderr, "example: a bad build (fault crash): exiting at start")
		os.Exit(1)
	case "hang":
		return func(ctx context.Context, _ []listener.Inherited) error {
			<-ctx.Done() // never accepts, so never ready
			return nil
		}, nil
	}
	// flap: the first Accept makes the worker ready; 300ms later it dies.
	return func(ctx context.Context, ls []listener.Inherited) error {
		var once sync.Once
		for i := range ls {
			ls[i].Listener = &flapListener{Listener: ls[i].Listener, once: &once}
		}
		return h(ctx, ls)
	}, nil
}

// flapListener exits the process 300ms after its first Accept.
type flapListener struct {
	net.Listener
	once *sync.Once
}

func (l *flapListener) Accept() (net.Conn, error) {
	l.once.Do(func() {
		time.AfterFunc(300*time.Millisecond, func() {
			fmt.Fprintln(os.Stderr, "example: a bad build (fault flap): exiting after ready")
			os.Exit(1)
		})
	})
	return l.Listener.Accept()
}

// handler answers every request with 200 and the serving worker's identity.
func handler() http.Handler {
	pid := strconv.Itoa(os.Getpid())
	gen := "0"
	if id, ok := worker.Self(); ok {
		gen = strconv.FormatUint(id.Generation, 10)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stream", stream)
	mux.HandleFunc("/ws", echo)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		// ?sleep=DUR holds the request, to have some in flight.
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil && d > 0 {
			select {
			case <-time.After(min(d, time.Minute)):
			case <-r.Context().Done():
			}
		}
		fmt.Fprintf(w, "hello from worker %s (generation %s)\n", pid, gen)
	})
	// Every answer names its worker, the /stream and /ws ones too.
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Worker-Pid", pid)
		w.Header().Set("X-Generation", gen)
		w.Header().Set("X-Version", version)
		mux.ServeHTTP(w, r)
	})
}

// stream sends ?n= lines (default 10, at most 100,000), one every ?every=
// (default 100ms, at most a minute), then a final line. The request's
// context is done at the worker's drain deadline: the stream then ends with
// a final line saying it was cut.
func stream(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("n"))
	if err != nil || n < 0 {
		n = 10
	}
	n = min(n, 100_000)
	every, err := time.ParseDuration(r.URL.Query().Get("every"))
	if err != nil || every <= 0 {
		every = 100 * time.Millisecond
	}
	every = min(every, time.Minute)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	rc := http.NewResponseController(w)
	tick := time.NewTicker(every)
	defer tick.Stop()
	for i := range n {
		fmt.Fprintf(w, "line %d of %d\n", i+1, n)
		if rc.Flush() != nil {
			return // the client is gone
		}
		if i == n-1 {
			break
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			fmt.Fprintf(w, "cut after %d of %d lines: the worker's drain deadline\n", i+1, n)
			return
		}
	}
	fmt.Fprintf(w, "done %d\n", n)
}

// echo is a WebSocket echo. It closes with 1001 (going away) when its
// worker starts to drain, so that the client reconnects to a successor.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered
	}
	defer c.CloseNow()
	ctx, cancel := context.WithCancel(r.Context())
	var closer sync.WaitGroup
	defer closer.Wait()
	defer cancel()
	closer.Go(func() {
		select {
		case <-worker.Draining(ctx):
			c.Close(websocket.StatusGoingAway, "worker draining")
		case <-ctx.Done():
		}
	})
	for {
		typ, b, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, b); err != nil {
			return
		}
	}
}

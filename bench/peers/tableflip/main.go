// Command tableflip is the tableflip peer of handoff's example: one Go
// process serving the same handler, upgraded in place with
// github.com/cloudflare/tableflip, in the pattern of that library's README
// and its net/http example: upg.Listen, upg.Ready, and on upg.Exit an
// http.Server.Shutdown.
//
//	tableflip -listen 127.0.0.1:0 [-h2c] [-drain handoff]
//
// -h2c serves cleartext HTTP/2 (prior knowledge) beside HTTP/1.1.
// -drain handoff drains with handoff's worker.ServeAndDrain instead of
// http.Server.Shutdown (the default, -drain shutdown): the same
// supervisor with handoff's drain, so that a comparison can tell what the
// supervisor does from what the drain does. There is no handoff
// supervisor here, so no hand-over: a draining connection is closed after
// its next response (Connection: close), or when its client closes it.
// SIGHUP starts an upgrade: the binary is started again, inherits the
// listening socket, and once it is ready the old process shuts its server
// down and exits. SIGTERM or SIGINT stops the process (upg.Stop) the same
// way. Each process logs JSON lines on stderr, which it passes on to its
// successor: {"msg":"ready","pid":…,"generation":…,"addr":…} once it
// serves, {"msg":"upgrade failed",…} and {"msg":"exiting",…}.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"

	"github.com/handoff-dev/handoff/bench/peers/internal/hello"
	"github.com/handoff-dev/handoff/worker"
)

// envGeneration counts the processes of an upgrade chain, for X-Generation.
const envGeneration = "TABLEFLIP_PEER_GENERATION"

// drainTimeout bounds the old process's Shutdown, as in tableflip's example.
const drainTimeout = 30 * time.Second

// logger writes one JSON object per line; the chain of processes shares
// stderr.
type logger struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (l *logger) log(msg string, kv ...any) {
	m := map[string]any{"msg": msg, "pid": os.Getpid(), "ts": float64(time.Now().UnixNano()) / 1e9}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.enc.Encode(m)
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on")
	pidFile := flag.String("pid-file", "", "path of the pid file tableflip writes when a process is ready")
	h2c := flag.Bool("h2c", false, "serve cleartext HTTP/2 (prior knowledge) beside HTTP/1.1")
	drain := flag.String("drain", drainShutdown, "how the old process drains: "+drainShutdown+" (http.Server.Shutdown) or "+drainHandoff+" (handoff's worker.ServeAndDrain)")
	flag.Parse()
	log := &logger{enc: json.NewEncoder(os.Stderr)}
	if *drain != drainShutdown && *drain != drainHandoff {
		log.log("exiting", "error", "-drain: want "+drainShutdown+" or "+drainHandoff)
		os.Exit(2)
	}
	if err := run(log, *listen, *pidFile, *h2c, *drain); err != nil {
		log.log("exiting", "error", err.Error())
		os.Exit(1)
	}
	log.log("exiting")
}

// How the old process drains (-drain).
const (
	drainShutdown = "shutdown"
	drainHandoff  = "handoff"
)

func run(log *logger, addr, pidFile string, h2c bool, drain string) error {
	gen := 1
	if g, err := strconv.Atoi(os.Getenv(envGeneration)); err == nil && g > 0 {
		gen = g
	}
	upg, err := tableflip.New(tableflip.Options{PIDFile: pidFile})
	if err != nil {
		return err
	}
	defer upg.Stop()

	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				upg.Stop()
				return
			}
			// The successor inherits the environment as it is now.
			os.Setenv(envGeneration, strconv.Itoa(gen+1))
			if err := upg.Upgrade(); err != nil {
				log.log("upgrade failed", "error", err.Error())
			}
		}
	}()

	ln, err := upg.Listen("tcp", addr)
	if err != nil {
		return err
	}
	defer ln.Close()
	srv := &http.Server{Handler: hello.Handler(strconv.Itoa(gen)), ReadHeaderTimeout: 30 * time.Second}
	if h2c {
		srv.Protocols = new(http.Protocols)
		srv.Protocols.SetHTTP1(true)
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	if drain == drainHandoff {
		return serveAndDrain(log, upg, srv, ln, gen)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()

	if err := upg.Ready(); err != nil {
		return err
	}
	log.log("ready", "generation", gen, "addr", ln.Addr().String())
	select {
	case <-upg.Exit():
	case err := <-served:
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	err = srv.Shutdown(ctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

// serveAndDrain serves with handoff's drain: the drain starts when
// tableflip says the successor is ready.
func serveAndDrain(log *logger, upg *tableflip.Upgrader, srv *http.Server, ln net.Listener, gen int) error {
	ctx, startDrain := context.WithCancel(context.Background())
	defer startDrain()
	served := make(chan error, 1)
	go func() {
		served <- worker.ServeAndDrain(ctx, srv, []net.Listener{ln}, worker.WithDrainTimeout(drainTimeout),
			worker.WithDrainLogger(nil))
	}()
	if err := upg.Ready(); err != nil {
		startDrain()
		return errors.Join(err, <-served)
	}
	log.log("ready", "generation", gen, "addr", ln.Addr().String())
	select {
	case <-upg.Exit():
		startDrain()
		return <-served
	case err := <-served:
		return err
	}
}

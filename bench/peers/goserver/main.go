// Command goserver is the plain Go peer of handoff's example: one process
// serving the same handler (X-Worker-Pid, X-Generation, X-Version,
// ?sleep=) with net/http, without a supervisor.
//
//	goserver -listen 127.0.0.1:0               # one process; set GOMAXPROCS to taste
//	goserver -listen 127.0.0.1:8080 -reuseport # one of N processes sharing a port (Linux)
//	goserver -inherit                          # serve on the listening socket at fd 3
//
// Once it accepts, it prints "listening ADDR" on stdout. SIGTERM or SIGINT
// stops it gracefully (in-flight requests finish, at most 10 s) with
// status 0.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/peers/internal/hello"
)

// shutdownTimeout bounds the graceful stop.
const shutdownTimeout = 10 * time.Second

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "TCP address to listen on")
	reuse := flag.Bool("reuseport", false, "set SO_REUSEPORT, so that several processes can share the port")
	inherit := flag.Bool("inherit", false, "serve on the listening socket at fd 3 instead of -listen")
	flag.Parse()
	if err := run(*listen, *reuse, *inherit); err != nil {
		fmt.Fprintln(os.Stderr, "goserver:", err)
		os.Exit(1)
	}
}

func run(addr string, reuse, inherit bool) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := listen(ctx, addr, reuse, inherit)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: hello.Handler("0"), ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	fmt.Printf("listening %s\n", ln.Addr())
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return err
}

func listen(ctx context.Context, addr string, reuse, inherit bool) (net.Listener, error) {
	if inherit {
		f := os.NewFile(3, "inherited")
		if f == nil {
			return nil, errors.New("-inherit: no fd 3")
		}
		defer f.Close()
		ln, err := net.FileListener(f)
		if err != nil {
			return nil, fmt.Errorf("-inherit: fd 3: %w", err)
		}
		return ln, nil
	}
	lc := net.ListenConfig{}
	if reuse {
		lc.Control = reusePort
	}
	return lc.Listen(ctx, "tcp", addr)
}

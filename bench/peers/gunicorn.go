package peers

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// WSGIModule is the module name of the WSGI application Gunicorn.Write
// creates; the application is WSGIModule + ":app".
const WSGIModule = "handoff_bench_app"

// WSGIApp answers like handoff's example: it reads the request body, then
// answers 200 naming the worker process.
const WSGIApp = `# Written by handoff's bench/peers: the example's answer, in WSGI.
import os


def app(environ, start_response):
    n = int(environ.get("CONTENT_LENGTH") or 0)
    if n > 0:
        environ["wsgi.input"].read(n)
    pid = str(os.getpid())
    body = ("hello from worker %s (generation 0)\n" % pid).encode()
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("X-Worker-Pid", pid),
        ("X-Generation", "0"),
        ("X-Version", "peer"),
    ])
    return [body]
`

// Gunicorn is a gunicorn instance with gthread workers, which keep
// connections alive, serving WSGIApp.
type Gunicorn struct {
	// Dir is the absolute directory that holds the application; it must
	// exist before Write.
	Dir string
	// Addr is the loopback address to bind, e.g. "127.0.0.1:8080".
	Addr string
	// Workers (-w) and Threads (--threads) per worker, 1 to 64 each.
	Workers, Threads int
}

// AppPath is the application file Write creates.
func (g Gunicorn) AppPath() string { return filepath.Join(g.Dir, WSGIModule+".py") }

// Args returns gunicorn's command-line arguments, or an error naming the
// parameter that is wrong.
func (g Gunicorn) Args() ([]string, error) {
	if err := checkDir("gunicorn directory", g.Dir); err != nil {
		return nil, err
	}
	addr, err := checkAddr(g.Addr)
	if err != nil {
		return nil, err
	}
	if g.Workers < 1 || g.Workers > 64 || g.Threads < 1 || g.Threads > 64 {
		return nil, fmt.Errorf("peers: gunicorn workers %d and threads %d: each must be in [1, 64]", g.Workers, g.Threads)
	}
	return []string{
		"--worker-class", "gthread", "--threads", strconv.Itoa(g.Threads), "--workers", strconv.Itoa(g.Workers),
		"--bind", addr, "--chdir", g.Dir, "--log-level", "info",
		WSGIModule + ":app",
	}, nil
}

// Write writes the application to AppPath.
func (g Gunicorn) Write() error {
	if err := checkDir("gunicorn directory", g.Dir); err != nil {
		return err
	}
	if err := os.WriteFile(g.AppPath(), []byte(WSGIApp), 0o644); err != nil {
		return fmt.Errorf("peers: %w", err)
	}
	return nil
}

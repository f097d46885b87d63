// Command echo is a worker-only program: a TCP echo server that imports
// package worker and nothing of the supervisor. It serves on the sockets it
// inherits, from the handoff CLI or from systemd:
//
//	go build -o /tmp/echo ./example/echo
//	go run ./cmd/handoff -listen tcp://127.0.0.1:7000 -workers 2 -ready notify -- /tmp/echo
//	systemd-socket-activate -l 127.0.0.1:7000 /tmp/echo
//
// It never says "ready" by hand: worker.Run sends READY=1 the first time
// the handler accepts. SIGTERM or SIGINT stops accepting; connections in
// progress are closed once the handler returns.
package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/worker"
)

func main() {
	if err := worker.Run(context.Background(), echo); err != nil {
		fmt.Fprintln(os.Stderr, "echo:", err)
		os.Exit(1)
	}
}

// echo accepts on every listener and copies each connection's bytes back
// to it, until ctx is done.
func echo(ctx context.Context, ls []listener.Inherited) error {
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		conns   = map[net.Conn]bool{}
		stopped bool
	)
	for _, l := range ls {
		wg.Go(func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return // closed: the worker is stopping
				}
				mu.Lock()
				if stopped {
					mu.Unlock()
					c.Close()
					return
				}
				conns[c] = true
				mu.Unlock()
				wg.Go(func() {
					io.Copy(c, c)
					c.Close()
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
				})
			}
		})
	}
	<-ctx.Done()
	// Stop accepting, and end the connections still open.
	for _, l := range ls {
		l.Close()
	}
	mu.Lock()
	stopped = true
	for c := range conns {
		c.Close()
	}
	mu.Unlock()
	wg.Wait()
	return nil
}

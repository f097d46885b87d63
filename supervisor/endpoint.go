package supervisor

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
)

// An endpoint is an HTTP server the supervisor runs itself (metrics,
// health) on a socket of its own that survives an in-place upgrade like
// the workers' sockets: the same pid keeps answering, and requests that
// arrive during the exec wait in the kernel's queue for the new program.
// Keep-alive is off: each request has a connection of its own, so none is
// cut by the exec.
type endpoint struct {
	name    string
	handler func(*Supervisor) http.Handler
	parsed  listener.Addr // Network "": not asked for
	sock    *listener.Socket
	srv     *http.Server   // while serving
	ln      net.Listener   // srv's, a duplicate of sock
	done    chan struct{}  // closed when srv.Serve has returned
	conns   sync.WaitGroup // srv's connections not closed yet
}

// open binds the endpoint's address, or takes the socket the previous
// program handed over (fd > 0). An inherited socket is kept even if this
// program was configured with another address; one this program does not
// serve is closed.
func (e *endpoint) open(t *table, fd int) error {
	var err error
	switch {
	case fd > 0 && e.parsed.Network == "":
		sock, err := listener.AdoptFd(fd, e.name)
		if err == nil {
			sock.Close()
		}
		return nil
	case fd > 0:
		e.sock, err = listener.AdoptFd(fd, e.name)
	case e.parsed.Network != "":
		e.sock, err = listener.Listen(e.parsed)
		if err == nil {
			t.log.Info("serving "+e.name, zap.Stringer("addr", e.sock.Addr()))
		}
	}
	if err != nil {
		return fmt.Errorf("supervisor: %s: %w", e.name, err)
	}
	return nil
}

// serve starts serving the socket, if there is one and it is not served.
func (e *endpoint) serve(t *table) error {
	if e.sock == nil || e.srv != nil {
		return nil
	}
	ln, err := socketListener(e.sock)
	if err != nil {
		return fmt.Errorf("supervisor: %s: %w", e.name, err)
	}
	srv := &http.Server{
		Handler:           e.handler(t.s),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(t.log),
	}
	srv.SetKeepAlivesEnabled(false)
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			e.conns.Add(1) // in Serve, before its next Accept
		case http.StateClosed, http.StateHijacked:
			e.conns.Done()
		}
	}
	e.srv, e.ln, e.done = srv, ln, make(chan struct{})
	t.bg.Add(1)
	go func(done chan struct{}) {
		defer t.bg.Done()
		defer close(done)
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			t.log.Error(e.name+" endpoint", zap.Error(err))
		}
	}(e.done)
	return nil
}

// stop stops serving: the requests in progress end (for at most a few
// seconds), the connections not yet accepted stay queued on the socket,
// which stays open.
//
// Not http.Server.Shutdown: a connection accepted before it whose request
// is read after it is closed unanswered (net/http's conn.serve checks
// shuttingDown after each read), and the exec that follows an upgrade's
// stop would cut what Shutdown does not wait for: a probe or scrape read
// EOF about once per upgrade under continuous probing. So accepting stops,
// Serve is waited for (every connection it accepted is counted by then),
// and every counted connection is answered and closed (keep-alive is off),
// for at most stopWait.
func (e *endpoint) stop() {
	if e.srv == nil {
		return
	}
	e.ln.Close()
	<-e.done
	answered := make(chan struct{})
	go func() {
		e.conns.Wait()
		close(answered)
	}()
	select {
	case <-answered:
	case <-time.After(stopWait):
		e.srv.Close() // the rest are closed: their StateClosed ends the wait
		<-answered
	}
	e.srv, e.ln = nil, nil
}

// stopWait bounds how long a stopping endpoint answers the requests it
// has accepted.
const stopWait = 3 * time.Second

// close stops serving and closes the socket.
func (e *endpoint) close() {
	e.stop()
	if e.sock != nil {
		e.sock.Close()
		e.sock = nil
	}
}

// fd is the socket's descriptor for the upgrade state, 0 without one (or
// without the endpoint).
func (e *endpoint) fd() (fd int, err error) {
	if e == nil || e.sock == nil {
		return 0, nil
	}
	err = e.sock.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

// addr is the address served, "" without a socket.
func (e *endpoint) addr() string {
	if e == nil || e.sock == nil {
		return ""
	}
	return e.sock.Addr().String()
}

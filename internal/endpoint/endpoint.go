package endpoint

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

// A Server is an HTTP server the supervisor runs itself (metrics, health) on a socket of its
// own that survives an in-place upgrade like the workers' sockets: the same pid keeps
// answering, and requests that arrive during the exec wait in the kernel's queue for the new
// program. Keep-alive is off: each request has a connection of its own, so none is cut by the
// exec. A nil *Server serves nothing; its methods do nothing.
type Server struct {
	name  string
	addr  listener.Addr // configured; its unix socket file is removed at Close
	sock  *listener.Socket
	srv   *http.Server   // while serving
	ln    net.Listener   // srv's, a duplicate of sock
	done  chan struct{}  // closed when srv.Serve has returned
	conns sync.WaitGroup // srv's connections not closed yet
}

// Open binds addr, or takes the socket the previous program handed over (fd > 0), for the
// endpoint called name. An inherited socket is kept even if this program was configured with
// another address; one this program does not serve (addr.Network "") is closed. Without
// either, Open returns nil and no error.
func Open(name string, addr listener.Addr, fd int) (*Server, error) {
	var sock *listener.Socket
	var err error
	switch {
	case fd > 0 && addr.Network == "":
		if sock, err := listener.AdoptFd(fd, name); err == nil {
			sock.Close()
		}
		return nil, nil
	case fd > 0:
		sock, err = listener.AdoptFd(fd, name)
	case addr.Network != "":
		sock, err = listener.Listen(addr)
	default:
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Server{name: name, addr: addr, sock: sock}, nil
}

// Serve starts serving h on the socket, unless it is served already; log gets the server's
// errors. Stop or Close ends it.
func (e *Server) Serve(h http.Handler, log *zap.Logger) error {
	if e == nil || e.srv != nil {
		return nil
	}
	ln, err := socketListener(e.sock)
	if err != nil {
		return fmt.Errorf("%s: %w", e.name, err)
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log),
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
	go func(done chan struct{}) {
		defer close(done)
		err := srv.Serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			log.Error(e.name+" endpoint", zap.Error(err))
		}
	}(e.done)
	return nil
}

// Stop stops serving: the requests in progress end (for at most a few seconds), the
// connections not yet accepted stay queued on the socket, which stays open. It returns once
// the server's goroutine has.
//
// Not http.Server.Shutdown: a connection accepted before it whose request is read after it is
// closed unanswered (net/http's conn.serve checks shuttingDown after each read), and the exec
// that follows an upgrade's stop would cut what Shutdown does not wait for: a probe or scrape
// read EOF about once per upgrade under continuous probing. So accepting stops, Serve is
// waited for (every connection it accepted is counted by then), and every counted connection
// is answered and closed (keep-alive is off), for at most stopWait.
func (e *Server) Stop() {
	if e == nil || e.srv == nil {
		return
	}
	e.ln.Close()
	<-e.done
	answered := make(chan struct{})
	go func() {
		e.conns.Wait()
		close(answered)
	}()
	tm := time.NewTimer(stopWait)
	defer tm.Stop()
	select {
	case <-answered:
	case <-tm.C:
		e.srv.Close() // the rest are closed: their StateClosed ends the wait
		<-answered
	}
	e.srv, e.ln = nil, nil
}

// stopWait bounds how long a stopping endpoint answers the requests it has accepted.
const stopWait = 3 * time.Second

// Close stops serving and closes the socket. A unix socket file of the configured address
// goes with it, its socket being the only copy; the error says why it could not.
func (e *Server) Close() error {
	if e == nil {
		return nil
	}
	e.Stop()
	if e.sock == nil {
		return nil
	}
	e.sock.Close()
	e.sock = nil
	return listener.Unlink(e.addr)
}

// Fd is the socket's descriptor, to hand across an upgrade's exec; 0 without a socket.
func (e *Server) Fd() (fd int, err error) {
	if e == nil || e.sock == nil {
		return 0, nil
	}
	err = e.sock.Control(func(f uintptr) { fd = int(f) })
	return fd, err
}

// Addr is the address served, "" without a socket.
func (e *Server) Addr() string {
	if e == nil || e.sock == nil {
		return ""
	}
	return e.sock.Addr().String()
}

package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"sync"
	"time"
)

// keepAlivesOff reports whether srv.SetKeepAlivesEnabled(false) was called.
// net/http keeps that without a getter, so srv is asked the way a client
// would ask: a server with keep-alives off answers every request with
// "Connection: close" (http.Server.SetKeepAlivesEnabled; RFC 9112 §9.6).
// srv serves one request on an in-memory connection. Meanwhile the fields
// through which the caller would see it (handler, hooks, error log) and
// those that could fail it (timeouts, header limit) are set aside, and
// TLSNextProto is an empty map, so that net/http sets no HTTP/2 up on srv;
// all are put back before it returns. srv serves no client otherwise (see
// servercopy.go). If srv cannot serve (it was shut down), it reports false,
// keep-alives on, the default.
//
// ServeAndDrain calls it before serving; it must not run while anything
// else uses srv.
func keepAlivesOff(srv *http.Server) bool {
	saved := setAside(srv)
	defer saved.restore(srv)

	server, client := net.Pipe()
	defer client.Close()
	closed := make(chan struct{})
	var once sync.Once
	srv.Handler = http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	srv.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			once.Do(func() { close(closed) })
		}
	}
	l := newConnListener(server)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l) // returns once l is closed
	}()
	defer func() {
		l.Close()
		<-served
	}()
	select {
	case <-l.accepted:
	case <-served:
		server.Close()
		return false // it cannot serve
	}
	defer func() {
		client.Close()
		<-closed // the server is done with the connection, and with its hooks
	}()
	client.SetDeadline(time.Now().Add(10 * time.Second)) // only if net/http does not answer at all
	if _, err := io.WriteString(client, "GET / HTTP/1.1\r\nHost: keepalive.probe\r\n\r\n"); err != nil {
		return false
	}
	resp, err := http.ReadResponse(bufio.NewReader(client), nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.Close
}

// serverFields are the fields of an http.Server that keepAlivesOff sets
// aside.
type serverFields struct {
	handler                       http.Handler
	connState                     func(net.Conn, http.ConnState)
	connContext                   func(context.Context, net.Conn) context.Context
	baseContext                   func(net.Listener) context.Context
	errorLog                      *log.Logger
	tlsNextProto                  map[string]func(*http.Server, *tls.Conn, http.Handler)
	protocols                     *http.Protocols
	read, readHeader, write, idle time.Duration
	maxHeaderBytes                int
	disableGeneralOptionsHandler  bool
}

func setAside(srv *http.Server) serverFields {
	f := serverFields{
		srv.Handler, srv.ConnState, srv.ConnContext, srv.BaseContext, srv.ErrorLog, srv.TLSNextProto, srv.Protocols,
		srv.ReadTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes,
		srv.DisableGeneralOptionsHandler,
	}
	srv.Handler, srv.ConnState, srv.ConnContext, srv.BaseContext = nil, nil, nil, nil
	srv.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
	srv.Protocols = nil
	srv.ReadTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout, srv.IdleTimeout, srv.MaxHeaderBytes = 0, 0, 0, 0, 0
	srv.DisableGeneralOptionsHandler = false
	return f
}

func (f serverFields) restore(srv *http.Server) {
	srv.Handler, srv.ConnState, srv.ConnContext, srv.BaseContext = f.handler, f.connState, f.connContext, f.baseContext
	srv.ErrorLog, srv.TLSNextProto, srv.Protocols = f.errorLog, f.tlsNextProto, f.protocols
	srv.ReadTimeout, srv.ReadHeaderTimeout, srv.WriteTimeout, srv.IdleTimeout = f.read, f.readHeader, f.write, f.idle
	srv.MaxHeaderBytes, srv.DisableGeneralOptionsHandler = f.maxHeaderBytes, f.disableGeneralOptionsHandler
}

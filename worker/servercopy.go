package worker

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
)

// The servers ServeAndDrain serves with, built from the caller's. srv
// itself serves no client (only keepAlivesOff's question): it is shut down
// at the drain start, to start its RegisterOnShutdown functions, and a
// server shut down drops the requests it then reads on its idle
// connections, which the drain keeps open. So each
// server here copies srv's exported fields one by one; a field a later Go
// adds to http.Server is missed until it is copied here, and
// TestServerCopies fails until it is (or is listed there as left out on
// purpose).

// copyServer returns a server with srv's exported fields, but TLSConfig.
func copyServer(srv *http.Server, tlsConfig *tls.Config) *http.Server {
	return &http.Server{
		Addr:                         srv.Addr,
		Handler:                      srv.Handler,
		DisableGeneralOptionsHandler: srv.DisableGeneralOptionsHandler,
		TLSConfig:                    tlsConfig,
		ReadTimeout:                  srv.ReadTimeout,
		ReadHeaderTimeout:            srv.ReadHeaderTimeout,
		WriteTimeout:                 srv.WriteTimeout,
		IdleTimeout:                  srv.IdleTimeout,
		MaxHeaderBytes:               srv.MaxHeaderBytes,
		TLSNextProto:                 srv.TLSNextProto,
		ConnState:                    srv.ConnState,
		ErrorLog:                     srv.ErrorLog,
		BaseContext:                  srv.BaseContext,
		ConnContext:                  srv.ConnContext,
		HTTP2:                        srv.HTTP2,
		Protocols:                    srv.Protocols,
	}
}

// server returns the server ServeAndDrain serves HTTP/1.x with, and HTTP/2
// negotiated over TLS, built from srv; d.h2TLS, d.h2c and d.http1 say how
// it serves HTTP/2.
func (d *drainer) server(srv *http.Server, tlsConfig *tls.Config) *http.Server {
	inner := copyServer(srv, tlsConfig)
	inner.Handler, inner.ConnState, inner.BaseContext = d, d.connState, d.baseContext
	if d.keepAlivesOff = keepAlivesOff(srv); d.keepAlivesOff {
		inner.SetKeepAlivesEnabled(false)
	}
	if srv.TLSNextProto != nil {
		return inner // the caller serves what ALPN negotiates, HTTP/2 included
	}
	switch {
	case tlsConfig != nil && (srv.Protocols == nil || srv.Protocols.HTTP2()):
		// An "h2" entry of its own keeps net/http from serving HTTP/2
		// itself (see http.Server.TLSNextProto).
		d.h2TLS = true
		inner.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){"h2": d.serveH2TLS}
		d.connCtx = make(map[net.Conn]context.Context)
		inner.ConnContext = d.connContext
	case tlsConfig == nil && srv.Protocols != nil && srv.Protocols.UnencryptedHTTP2():
		// The client preface comes to ServeHTTP as an HTTP/1.x request,
		// "PRI * HTTP/2.0", and net/http serves no HTTP/2 of its own.
		d.h2c, d.http1 = true, srv.Protocols.HTTP1()
		p := new(http.Protocols)
		p.SetHTTP1(true)
		inner.Protocols = p
		d.handing = make(map[net.Conn]struct{})
		inner.ConnContext = d.connContext
	}
	return inner
}

// h2Server returns the server of the HTTP/2 connection hc, built from srv:
// it serves hc as h2c ("prior knowledge", the client preface first)
// whether hc is over TLS or not, calls h for each request, and gives each
// request a context derived from ctx. Its shutdown is hc's final GOAWAY.
func (d *drainer) h2Server(hc *h2Conn, h http.Handler, ctx context.Context) *http.Server {
	srv := d.srv
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	preface := srv.ReadHeaderTimeout
	if preface == 0 {
		preface = srv.ReadTimeout
	}
	if preface == 0 {
		preface = prefaceTimeout
	}
	hs := &http.Server{
		Handler:                      h,
		DisableGeneralOptionsHandler: srv.DisableGeneralOptionsHandler,
		ReadTimeout:                  srv.ReadTimeout,
		ReadHeaderTimeout:            preface, // net/http reads the client preface within it
		WriteTimeout:                 srv.WriteTimeout,
		IdleTimeout:                  srv.IdleTimeout,
		MaxHeaderBytes:               srv.MaxHeaderBytes,
		ConnState:                    d.h2State(hc),
		ErrorLog:                     srv.ErrorLog,
		ConnContext:                  func(context.Context, net.Conn) context.Context { return ctx },
		HTTP2:                        srv.HTTP2,
		Protocols:                    p,
		// Not carried: Addr (it has no listener of its own), TLSConfig
		// and TLSNextProto (TLS is done), BaseContext (ConnContext
		// replaces the whole context).
	}
	if d.keepAlivesOff {
		hs.SetKeepAlivesEnabled(false) // HTTP/2 sends GOAWAY once idle
	}
	return hs
}

// baseContext is the BaseContext hook of the server ServeAndDrain serves
// with: the caller's base context for l (or context.Background), carrying
// the drain's channel for Draining and done at the drain deadline. Every
// connection's context, and so every request's, is derived from it, once
// per listener rather than per request.
func (d *drainer) baseContext(l net.Listener) context.Context {
	ctx := context.Background()
	if d.srv.BaseContext != nil {
		if ctx = d.srv.BaseContext(l); ctx == nil {
			return nil // net/http panics, as it would without ServeAndDrain
		}
	}
	return d.withDrain(ctx)
}

// withDrain returns ctx with the drain's channel (see Draining), done at
// the drain deadline at the latest. What it registers goes when the
// deadline's context is cancelled, at the latest when ServeAndDrain returns.
func (d *drainer) withDrain(ctx context.Context) context.Context {
	ctx, cancel := context.WithCancel(context.WithValue(ctx, drainKey{}, d.drainCh))
	context.AfterFunc(d.cut, cancel)
	return ctx
}

// connKey is the context key of the connection a request came on, in the
// contexts connContext returns.
type connKey struct{}

// connContext is the ConnContext hook of the server ServeAndDrain serves
// with, when it serves HTTP/2: it calls the caller's, notes the connection
// in the context (for serveH2C), and keeps each TLS connection's context
// until HTTP/2 takes it (serveH2TLS) or the connection ends.
func (d *drainer) connContext(ctx context.Context, c net.Conn) context.Context {
	if d.srv.ConnContext != nil {
		ctx = d.srv.ConnContext(ctx, c)
		if ctx == nil {
			return nil // net/http panics, as it would without ServeAndDrain
		}
	}
	ctx = context.WithValue(ctx, connKey{}, c)
	if d.h2TLS {
		d.mu.Lock()
		d.connCtx[c] = ctx
		d.mu.Unlock()
	}
	return ctx
}

// takeConnCtx returns the context connContext kept for c, and forgets it.
func (d *drainer) takeConnCtx(c net.Conn) context.Context {
	d.mu.Lock()
	defer d.mu.Unlock()
	ctx, ok := d.connCtx[c]
	delete(d.connCtx, c)
	if !ok {
		return context.Background()
	}
	return ctx
}

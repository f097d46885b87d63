package worker

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServeAndDrain serves srv on every listener in ls until ctx is cancelled,
// then drains: it returns once every connection is closed, without failing a
// request, even for HTTP/1.1 keep-alive clients that never retry, clients
// that pool their connections and clients that poll at any period. It is
// the body of an HTTP worker being retired while its successor already
// accepts on the same listening socket.
//
// # Protocols
//
// srv is served over TLS when srv.TLSConfig has a certificate
// (Certificates, GetCertificate or GetConfigForClient) or WithTLSFiles
// gives one; HTTP/2 is then negotiated by ALPN unless srv.Protocols or
// srv.TLSNextProto turn it off. HTTP/2 without TLS (h2c, "prior
// knowledge") is served beside HTTP/1.1 when srv.Protocols asks for it
// (SetUnencryptedHTTP2).
//
// # The drain
//
// When ctx is done (or Serve fails on one of the listeners), the drain
// starts: the listeners in ls are closed (only this process's descriptors,
// so a successor keeps accepting on the shared socket), and at once:
//
//   - the channel Draining returns for every request's context is closed,
//     and so are those of requests that come later;
//   - functions registered with srv.RegisterOnShutdown are started;
//   - every HTTP/2 connection, idle or not, gets a GOAWAY in two steps
//     (RFC 9113 §6.8): a shutdown notice (a GOAWAY naming the largest
//     stream id) between two PINGs, then, once the client has acknowledged
//     them (at most a second, and not past the drain deadline), the final
//     GOAWAY naming the last stream read. Its client opens no new stream
//     on it, every stream it opened before the notice is served (none is
//     refused, even for clients that do not retry), streams in flight
//     finish, and the server closes it when they have;
//   - every HTTP/1.x response begun afterwards carries "Connection: close",
//     and the connection is closed once the response is sent. Before that
//     close, what the handler left unread of the request body is read and
//     discarded (up to WithBodyLimit), because closing a socket with unread
//     data in it sends a TCP reset, and a reset can destroy the response on
//     its way to the client.
//
// An idle HTTP/1.x keep-alive connection is not closed: it stays open until
// its client reuses it (and gets its answer with "Connection: close") or
// closes it. Closing a connection the server thinks idle always races a
// client that is reusing it, whatever the server checks first: the
// request may already be in the socket, or on its way, and the client
// sees EOF or a reset. Pooled clients and clients polling at a period near
// any idle grace hit that race on every drain. The price of not closing is
// a retired worker that lingers, holding idle connections, until their
// clients come back or until the drain deadline. WithIdleGrace restores an
// idle timeout, for those who prefer a prompt exit to that guarantee.
//
// # The drain deadline
//
// The drain has a deadline (WithDrainTimeout). By default it is three
// quarters of the supervisor's stop timeout (EnvStopTimeout; 30 s when
// unset), so that it always comes before the supervisor's SIGKILL. A
// second SIGTERM or SIGINT to a worker run by Run brings it forward to now
// (the supervisor sends one to hurry the oldest draining generation). At the
// deadline:
//
//   - every request's context is cancelled: a streaming handler sees
//     r.Context().Done(), writes its final chunk and returns; a WebSocket
//     handler sends its close frame (1001, going away);
//   - idle HTTP/1.x connections are closed, except one whose next request
//     already sits in the socket, which is answered with "Connection: close".
//
// What is still open a sixth of the drain timeout later (handlers that did
// not return, hijacked connections not closed) is closed by force, and the
// error returned wraps context.DeadlineExceeded. Either way the worker
// logs what the deadline cut (WithDrainLogger).
//
// Hijacked connections (http.Hijacker, http.ResponseController.Hijack,
// WebSocket libraries) are tracked: the drain waits for them to be closed,
// until the deadline. Their handlers should watch Draining(r.Context()).
//
// # Limits
//
// Two limits remain that no HTTP/1.1 server can remove: a client that
// pipelines loses the requests it sent after the response marked
// "Connection: close" (closed cleanly; RFC 9112 lets it retry them); and a
// client that keeps an idle connection past the drain deadline and then
// reuses it can fail (net/http's client checks, and opens a new one).
//
// # The server
//
// ServeAndDrain serves through a server of its own built from srv's
// exported fields (Handler, timeouts, hooks, TLS, protocols), with srv.Handler
// wrapped (nil means http.DefaultServeMux) and srv.ConnState chained (the
// caller's hook still runs, after ServeAndDrain's bookkeeping); srv itself
// is only shut down, so that its RegisterOnShutdown functions run at the
// drain start. SetKeepAlivesEnabled(false) on srv before ServeAndDrain is
// carried over; a call during ServeAndDrain is not. The
// ResponseWriter handlers see implements http.Flusher, http.Hijacker and
// io.ReaderFrom, and has an Unwrap method for http.ResponseController. Like
// any server that was shut down, srv cannot be served again afterwards.
//
// Errors from Serve are returned, joined, except the one caused by the drain
// closing the listener and http.ErrServerClosed. A bad argument returns an
// error at once, with nothing served and nothing closed. The goroutines
// ServeAndDrain starts have ended when it returns, except those running
// RegisterOnShutdown functions.
func ServeAndDrain(ctx context.Context, srv *http.Server, ls []net.Listener, opts ...DrainOption) error {
	if srv == nil {
		return errors.New("worker: drain: server is nil")
	}
	if len(ls) == 0 {
		return errors.New("worker: drain: no listeners")
	}
	for i, l := range ls {
		if l == nil {
			return fmt.Errorf("worker: drain: listener %d is nil", i)
		}
	}
	o := defaultDrainOptions()
	for _, opt := range opts {
		if opt != nil {
			opt.applyDrain(&o)
		}
	}
	if err := o.validate(); err != nil {
		return err
	}
	tlsConfig, err := o.tlsConfig(srv)
	if err != nil {
		return err
	}

	d := &drainer{
		opts:     o,
		next:     srv.Handler,
		hook:     srv.ConnState,
		conns:    make(map[net.Conn]*drainConn),
		hijacked: make(map[*hijackedConn]struct{}),
		h2New:    make(map[net.Conn]*h2Conn),
		h2:       make(map[*h2Conn]struct{}),
		bell:     make(chan struct{}, 1),
		drainCh:  make(chan struct{}),
	}
	if d.next == nil {
		d.next = http.DefaultServeMux
	}
	d.cut, d.cutNow = context.WithCancel(context.Background())
	defer d.cutNow()
	inner, h2host, err := d.servers(srv, tlsConfig)
	if err != nil {
		return err
	}
	d.h2host = h2host
	defer d.goaways.Wait()
	serveOn := ls
	if tlsConfig != nil {
		serveOn = make([]net.Listener, len(ls))
		for i, l := range ls {
			serveOn[i] = tls.NewListener(l, tlsConfig)
		}
	}

	errc := make(chan error, len(ls))
	var serving sync.WaitGroup
	for _, l := range serveOn {
		serving.Go(func() { errc <- d.serve(inner, l) })
	}
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc:
		errs = append(errs, err)
	}

	hurry := hurried(ctx)
	d.start(ls)
	shut, shutDone := context.WithCancel(context.Background())
	shutDone()
	var shutting sync.WaitGroup
	shutting.Go(func() {
		// Neither has a listener or a connection: they only start their
		// RegisterOnShutdown functions, HTTP/2's final GOAWAYs among them.
		srv.Shutdown(shut)
		if h2host != nil {
			d.goAway(d.h2Conns(), shut)
		}
	})
	serving.Wait() // every accepted connection has now been through StateNew
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	errs = append(errs, d.wait(inner, hurry))
	shutting.Wait()
	return errors.Join(errs...)
}

// servers returns the server ServeAndDrain serves with, built from srv, and
// the server that owns the HTTP/2 connections' graceful shutdown, or nil
// when HTTP/2 is off or srv brings its own TLSNextProto.
func (d *drainer) servers(srv *http.Server, tlsConfig *tls.Config) (inner, h2host *http.Server, err error) {
	inner = &http.Server{
		Addr:                         srv.Addr,
		Handler:                      d,
		DisableGeneralOptionsHandler: srv.DisableGeneralOptionsHandler,
		TLSConfig:                    tlsConfig,
		ReadTimeout:                  srv.ReadTimeout,
		ReadHeaderTimeout:            srv.ReadHeaderTimeout,
		WriteTimeout:                 srv.WriteTimeout,
		IdleTimeout:                  srv.IdleTimeout,
		MaxHeaderBytes:               srv.MaxHeaderBytes,
		TLSNextProto:                 srv.TLSNextProto,
		ConnState:                    d.connState,
		ErrorLog:                     srv.ErrorLog,
		BaseContext:                  srv.BaseContext,
		ConnContext:                  srv.ConnContext,
		HTTP2:                        srv.HTTP2,
		Protocols:                    srv.Protocols,
	}
	if keepAlivesDisabled(srv) {
		inner.SetKeepAlivesEnabled(false)
	}
	if srv.TLSNextProto != nil {
		return inner, nil, nil
	}
	// Configuring HTTP/2 registers its graceful shutdown (the GOAWAYs) with
	// the server configured; h2host is that server, shut down at the drain
	// start while inner keeps serving HTTP/1.x. Serve configures it, then
	// returns the listener's error.
	h2host = &http.Server{
		TLSConfig:    tlsConfig,
		ReadTimeout:  srv.ReadTimeout,
		IdleTimeout:  srv.IdleTimeout,
		HTTP2:        srv.HTTP2,
		Protocols:    srv.Protocols,
		ErrorLog:     srv.ErrorLog,
		Handler:      http.NotFoundHandler(),
		TLSNextProto: nil,
	}
	if err := h2host.Serve(noListener{}); !errors.Is(err, errNoListener) {
		return nil, nil, fmt.Errorf("worker: drain: http/2: %w", err)
	}
	if h2host.TLSNextProto == nil {
		return inner, nil, nil // HTTP/2 is off
	}
	// Both are served through an h2Conn, by the h2c function, which
	// serves any connection after the client preface (see serveH2).
	serveConn := h2host.TLSNextProto[nextProtoH2C]
	if serveConn == nil {
		return nil, nil, errors.New("worker: drain: http/2: no " + nextProtoH2C + " function in TLSNextProto")
	}
	inner.TLSNextProto = maps.Clone(h2host.TLSNextProto)
	for _, proto := range []string{"h2", nextProtoH2C} {
		inner.TLSNextProto[proto] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
			var under net.Conn = c // what net/http calls ConnState with
			tc := c
			if proto == nextProtoH2C {
				u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
				if !ok {
					serveConn(hs, c, h) // it reports the error
					return
				}
				under, tc = u.UnencryptedNetConn(), nil
			}
			hc := newH2Conn(under)
			d.mu.Lock()
			d.h2New[under] = hc
			d.h2[hc] = struct{}{}
			d.mu.Unlock()
			d.h2Served.Add(1)
			d.h2Open.Add(1)
			defer func() {
				d.h2Open.Add(-1)
				d.mu.Lock()
				delete(d.h2, hc)
				delete(d.h2New, under)
				d.mu.Unlock()
				close(hc.done)
			}()
			serveH2(hs, hc, tc, h, serveConn) // until the connection is closed
		}
	}
	return inner, h2host, nil
}

// nextProtoH2C is the TLSNextProto key net/http serves h2c connections
// with.
const nextProtoH2C = "unencrypted_http2"

// keepAlivesDisabled reports whether srv.SetKeepAlivesEnabled(false) was
// called. net/http keeps that in an unexported field without a getter: it
// is read here, never written, and if a Go release renames it, it reads as
// enabled, the default (TestDrainKeepAlivesDisabled then fails).
func keepAlivesDisabled(srv *http.Server) bool {
	f := reflect.ValueOf(srv).Elem().FieldByName("disableKeepAlives")
	if !f.IsValid() || f.Type() != reflect.TypeFor[atomic.Bool]() {
		return false
	}
	v := f.FieldByName("v")
	return v.IsValid() && v.CanUint() && v.Uint() != 0
}

var errNoListener = errors.New("no listener")

// noListener is a listener that fails at once: serving it configures a
// server's HTTP/2 and returns.
type noListener struct{}

func (noListener) Accept() (net.Conn, error) { return nil, errNoListener }
func (noListener) Close() error              { return nil }
func (noListener) Addr() net.Addr            { return &net.TCPAddr{} }

// A DrainOption configures ServeAndDrain.
type DrainOption interface{ applyDrain(*drainOptions) }

type drainOptionFunc func(*drainOptions)

func (f drainOptionFunc) applyDrain(o *drainOptions) { f(o) }

// drainOptions holds ServeAndDrain's settings with their defaults.
type drainOptions struct {
	idleGrace time.Duration // with idleGraceSet; otherwise idle connections wait for the deadline
	idleSet   bool
	timeout   time.Duration // the drain deadline; 0: none
	bodyLimit int64
	certFile  string
	keyFile   string
	logger    *slog.Logger
}

func defaultDrainOptions() drainOptions {
	return drainOptions{timeout: DefaultDrainTimeout(), bodyLimit: 1 << 20, logger: slog.Default()}
}

func (o drainOptions) validate() error {
	switch {
	case o.idleGrace < 0:
		return fmt.Errorf("worker: drain: idle grace %v is negative", o.idleGrace)
	case o.timeout < 0:
		return fmt.Errorf("worker: drain: drain timeout %v is negative", o.timeout)
	case o.bodyLimit < 0:
		return fmt.Errorf("worker: drain: body limit %d is negative", o.bodyLimit)
	case (o.certFile == "") != (o.keyFile == ""):
		return fmt.Errorf("worker: drain: TLS needs both a certificate and a key file, got %q and %q", o.certFile, o.keyFile)
	}
	return nil
}

// WithIdleGrace makes the drain close a connection that has been idle for
// d, counted from its last activity. By default an idle connection is
// left open until its client reuses or closes it, or until the drain
// deadline: any idle close races a client reusing the connection, and
// fails its request (see ServeAndDrain). 0 closes idle connections as soon
// as the drain starts, like http.Server.Shutdown.
func WithIdleGrace(d time.Duration) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.idleGrace, o.idleSet = d, true })
}

// WithDrainTimeout sets the drain deadline: d after the drain started,
// request contexts are cancelled and idle connections closed, and what
// is left d/6 later is closed by force (see ServeAndDrain). The default is
// DefaultDrainTimeout(); 0 sets no deadline: the supervisor kills the worker
// at its stop timeout.
func WithDrainTimeout(d time.Duration) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.timeout = d })
}

// WithBodyLimit sets how much of a request body the handler left unread is
// read and discarded before a draining connection is closed (default
// 1 MiB). Beyond it the connection is closed anyway, and the client may
// see a reset. 0 reads nothing. A body that was never asked for with
// "100 Continue" before the response header went out is not read either:
// its client waits for the response instead of sending it.
func WithBodyLimit(n int64) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.bodyLimit = n })
}

// WithTLSFiles serves TLS with the certificate chain and key in these PEM
// files (as http.Server.ServeTLS), on top of srv.TLSConfig if it is set.
func WithTLSFiles(certFile, keyFile string) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.certFile, o.keyFile = certFile, keyFile })
}

// WithDrainLogger sets where the drain reports what its deadline cut
// (default slog.Default()); nil reports nothing.
func WithDrainLogger(l *slog.Logger) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.logger = l })
}

// tlsConfig returns the TLS configuration to serve with, or nil for
// plaintext.
func (o drainOptions) tlsConfig(srv *http.Server) (*tls.Config, error) {
	c := srv.TLSConfig
	if o.certFile == "" && (c == nil || len(c.Certificates) == 0 && c.GetCertificate == nil && c.GetConfigForClient == nil) {
		if c != nil {
			return nil, errors.New("worker: drain: TLSConfig has no certificate (Certificates, GetCertificate or GetConfigForClient)")
		}
		return nil, nil
	}
	if c == nil {
		c = &tls.Config{}
	} else {
		c = c.Clone()
	}
	if o.certFile != "" {
		cert, err := tls.LoadX509KeyPair(o.certFile, o.keyFile)
		if err != nil {
			return nil, fmt.Errorf("worker: drain: %w", err)
		}
		c.Certificates = append(c.Certificates, cert)
	}
	if len(c.NextProtos) == 0 && (srv.Protocols == nil || srv.Protocols.HTTP2()) && srv.TLSNextProto == nil {
		// Serve configures HTTP/2 for a TLS listener only if "h2" is
		// offered; configuring it completes the list.
		c.NextProtos = []string{"h2", "http/1.1"}
	}
	return c, nil
}

// drainer is the state of one ServeAndDrain call: the handler wrapper and
// the connection table fed by the ConnState hook. The hook runs on the
// server's connection goroutines; the timers closing idle connections run
// on their own. mu guards everything below it.
type drainer struct {
	opts drainOptions
	next http.Handler                   // the caller's handler
	hook func(net.Conn, http.ConnState) // the caller's ConnState hook, or nil

	draining      atomic.Bool   // set under mu, once, when the drain starts
	drainCh       chan struct{} // closed when the drain starts
	cut           context.Context
	cutNow        context.CancelFunc   // cancels cut: the drain deadline
	closingListen atomic.Bool          // the drain is closing the listeners
	handlers      atomic.Int64         // handlers running
	h2Served      atomic.Int64         // HTTP/2 connections served
	h2Open        atomic.Int64         // HTTP/2 connections open
	h2host        *http.Server         // shut down to send GOAWAYs; nil without HTTP/2
	goaways       sync.WaitGroup       // goroutines sending late GOAWAYs and notices
	h2New         map[net.Conn]*h2Conn // HTTP/2 connections HTTP/2 has not reported yet, by underlying connection; under mu
	h2            map[*h2Conn]struct{} // HTTP/2 connections being served; under mu

	mu       sync.Mutex
	conns    map[net.Conn]*drainConn
	hijacked map[*hijackedConn]struct{}
	stopped  bool           // ServeAndDrain is returning: arm no more timers
	timers   sync.WaitGroup // timer functions armed and not yet run or stopped
	bell     chan struct{}  // rung when a connection or handler goes away during the drain
}

// drainConn is what the drainer knows of one connection.
type drainConn struct {
	idle  bool        // StateNew or StateIdle: no request in progress
	last  time.Time   // last activity: accepted, a request read, a response sent
	gen   uint64      // counts state changes, so a timer can tell it is stale
	timer *time.Timer // closes the connection if it stays idle; nil if none
}

// serve runs srv on l and returns Serve's error, unless it only says that the
// drain closed l or that srv was shut down.
func (d *drainer) serve(srv *http.Server, l net.Listener) error {
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || d.closingListen.Load() && errors.Is(err, net.ErrClosed) {
		return nil
	}
	return fmt.Errorf("worker: serve %s: %w", l.Addr(), err)
}

// connState is the server's ConnState: it keeps the connection table, then
// calls the caller's hook.
func (d *drainer) connState(c net.Conn, st http.ConnState) {
	c = underlying(c) // HTTP/2 reports the h2Conn it serves
	d.track(c, st)
	d.lateGoAway(c)
	if d.hook != nil {
		d.hook(c, st)
	}
}

func (d *drainer) track(c net.Conn, st http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch st {
	case http.StateNew, http.StateActive, http.StateIdle:
		dc := d.conns[c]
		if dc == nil {
			dc = &drainConn{}
			d.conns[c] = dc
		}
		d.disarm(dc)
		dc.gen++
		dc.idle = st != http.StateActive
		dc.last = time.Now()
		if dc.idle && d.opts.idleSet && d.draining.Load() && !d.stopped {
			d.arm(c, dc, d.opts.idleGrace)
		}
		if dc.idle {
			d.ring() // past the deadline, wait closes it
		}
	case http.StateHijacked, http.StateClosed:
		if dc := d.conns[c]; dc != nil {
			d.disarm(dc)
			delete(d.conns, c)
		}
		d.ring()
	}
}

// lateGoAway sends a GOAWAY to HTTP/2 connections that began to be served
// after the drain started (a TLS handshake in progress then), and to those
// it had not reported yet when the drain started: HTTP/2's graceful
// shutdown reaches only the connections it knows, and a connection's first
// ConnState call comes once it knows it.
func (d *drainer) lateGoAway(c net.Conn) {
	if d.h2host == nil {
		return
	}
	d.mu.Lock()
	hc := d.h2New[c]
	late := hc != nil && d.draining.Load() && !d.stopped
	delete(d.h2New, c) // reported: a GOAWAY from now on reaches it
	if late {
		d.goaways.Add(1)
	}
	d.mu.Unlock()
	if late {
		go func() {
			defer d.goaways.Done()
			done, cancel := context.WithCancel(context.Background())
			cancel()
			d.goAway([]*h2Conn{hc}, done)
		}()
	}
}

// h2Conns returns the HTTP/2 connections being served.
func (d *drainer) h2Conns() []*h2Conn {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Collect(maps.Keys(d.h2))
}

// goAway runs the drain's HTTP/2 steps on every connection in cs (see
// h2Conn): a PING, the shutdown notice and a second PING, each after the
// ACK of the PING before. Once every connection has acknowledged its
// second PING (at most noticeWait, and not past the drain deadline), it
// shuts HTTP/2 down with done, a cancelled context: every connection
// HTTP/2 has reported gets its final GOAWAY (each sends one only), naming
// the last stream it read.
//
// A connection not in cs but in the middle of its own steps (one that
// began during the drain) gets its final GOAWAY now too: correct, but
// without the round trips' guarantee.
func (d *drainer) goAway(cs []*h2Conn, done context.Context) {
	stop := make(chan struct{})
	for _, c := range cs {
		d.goaways.Go(func() { c.notice(stop) }) // blocks while the server is blocked writing
	}
	wait := time.NewTimer(noticeWait)
	defer wait.Stop()
acks:
	for _, c := range cs {
		select {
		case <-c.noticed():
		case <-c.done:
		case <-wait.C:
			break acks
		case <-d.cut.Done():
			break acks
		}
	}
	close(stop)
	for _, c := range cs {
		c.finish()
	}
	d.h2host.Shutdown(done)
}

// ring wakes wait up, if the drain has started.
func (d *drainer) ring() {
	if d.draining.Load() {
		select {
		case d.bell <- struct{}{}:
		default: // already rung
		}
	}
}

// arm starts dc's timer: after wait (at once if it is not positive), c is
// closed if it is still idle and has not changed state since. d.mu is held.
func (d *drainer) arm(c net.Conn, dc *drainConn, wait time.Duration) {
	gen := dc.gen
	d.timers.Add(1)
	dc.timer = time.AfterFunc(wait, func() {
		defer d.timers.Done()
		d.mu.Lock()
		expired := d.conns[c] == dc && dc.gen == gen && dc.idle
		d.mu.Unlock()
		if expired {
			c.Close() // outside the lock: a TLS close writes to the peer
		}
	})
}

// disarm stops dc's timer, if any. A timer whose function has already
// started finds dc changed and does nothing. d.mu is held.
func (d *drainer) disarm(dc *drainConn) {
	if dc.timer != nil && dc.timer.Stop() {
		d.timers.Done()
	}
	dc.timer = nil
}

// start begins the drain: from now on responses ask for the connection to be
// closed, Draining's channels are closed, and with an idle grace every idle
// connection gets a timer for what remains of it; then the listeners are
// closed, and the start is logged with the number of HTTP/2 connections
// about to get a GOAWAY.
func (d *drainer) start(ls []net.Listener) {
	d.mu.Lock()
	d.draining.Store(true)
	close(d.drainCh)
	if d.opts.idleSet {
		now := time.Now()
		for c, dc := range d.conns {
			if dc.idle {
				d.arm(c, dc, d.opts.idleGrace-now.Sub(dc.last))
			}
		}
	}
	conns, idle := len(d.conns), 0
	for _, dc := range d.conns {
		if dc.idle {
			idle++
		}
	}
	d.mu.Unlock()
	d.closingListen.Store(true)
	for _, l := range ls {
		l.Close() // an error means it is already closed, which is the aim
	}
	if d.opts.logger != nil {
		d.opts.logger.Info("worker: drain started", slog.Int("pid", os.Getpid()),
			slog.Int("connections", conns), slog.Int("idle", idle),
			slog.Int64("http2_goaway", d.h2Open.Load()), slog.Duration("deadline", d.opts.timeout))
	}
}

// left counts what the drain still waits for.
func (d *drainer) left() (conns, idle, hijacked int, handlers int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dc := range d.conns {
		if dc.idle {
			idle++
		}
	}
	return len(d.conns), idle, len(d.hijacked), d.handlers.Load()
}

// wait returns once no connection, hijacked connection or handler is left.
// At the drain deadline (or when hurry is closed) it cuts: it cancels the
// request contexts and closes idle connections with nothing to read, then
// closes whatever is left a sixth of the timeout later.
func (d *drainer) wait(srv *http.Server, hurry <-chan struct{}) error {
	var soft, hard <-chan time.Time
	if d.opts.timeout > 0 {
		soft = time.After(d.opts.timeout)
	}
	started := time.Now()
	cutAt := time.Duration(-1)
	var cutIdle, cutConns, cutHijacked int
	var cutHandlers int64
	for {
		conns, _, hijacked, handlers := d.left()
		if conns == 0 && hijacked == 0 && handlers == 0 {
			break
		}
		select {
		case <-d.bell:
			if cutAt >= 0 {
				d.closeIdle() // connections that went idle since the cut
			}
		case <-hurry:
			hurry = nil
			soft = closedTime
		case <-soft:
			soft, hurry = nil, nil
			cutAt = time.Since(started)
			_, cutIdle, cutHijacked, cutHandlers = d.left()
			cutConns = conns
			d.cutNow()
			d.closeIdle()
			grace := d.opts.timeout / 6
			if d.opts.timeout == 0 || grace > time.Minute {
				grace = time.Minute
			}
			hard = time.After(grace)
		case <-hard:
			d.stop()
			srv.Close()
			conns, _, hijacked, handlers := d.left()
			d.closeHijacked()
			d.report("drain deadline: closed what was left by force", cutAt, cutConns, cutIdle, cutHijacked, cutHandlers,
				slog.Int("forced_connections", conns), slog.Int("forced_hijacked", hijacked), slog.Int64("forced_handlers", handlers))
			return fmt.Errorf("worker: drain: deadline %v passed, then %d connections, %d hijacked and %d handlers were left; closed them: %w",
				d.opts.timeout, conns, hijacked, handlers, context.DeadlineExceeded)
		}
	}
	d.stop()
	if cutAt >= 0 {
		d.report("drain deadline: cut what was left", cutAt, cutConns, cutIdle, cutHijacked, cutHandlers)
	}
	// Nothing is left for Shutdown to wait for; the cancelled context
	// guarantees it does not wait anyway.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(done); err != nil {
		return fmt.Errorf("worker: drain: shutdown: %w", err)
	}
	return nil
}

// closedTime is a channel that is always ready.
var closedTime = func() <-chan time.Time {
	c := make(chan time.Time)
	close(c)
	return c
}()

// report logs what the drain deadline cut.
func (d *drainer) report(msg string, after time.Duration, conns, idle, hijacked int, handlers int64, more ...any) {
	if d.opts.logger == nil {
		return
	}
	args := append([]any{
		slog.Int("pid", os.Getpid()), slog.Duration("after", after), slog.Int("connections", conns), slog.Int("idle", idle),
		slog.Int("hijacked", hijacked), slog.Int64("handlers", handlers), slog.Int64("http2_connections", d.h2Served.Load()),
	}, more...)
	d.opts.logger.Info("worker: "+msg, args...)
}

// closeIdle closes the idle connections that have nothing to read: one
// whose next request is already in the socket is left to be answered,
// with "Connection: close".
func (d *drainer) closeIdle() {
	d.mu.Lock()
	var idle []net.Conn
	for c, dc := range d.conns {
		if dc.idle && !pending(c) {
			idle = append(idle, c)
		}
	}
	d.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// closeHijacked closes every hijacked connection still open.
func (d *drainer) closeHijacked() {
	d.mu.Lock()
	hs := make([]*hijackedConn, 0, len(d.hijacked))
	for h := range d.hijacked {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, h := range hs {
		h.Close()
	}
}

// stop disarms every timer and waits for the functions of those already
// firing, so that no goroutine outlives ServeAndDrain.
func (d *drainer) stop() {
	d.mu.Lock()
	d.stopped = true
	for _, dc := range d.conns {
		d.disarm(dc)
	}
	d.mu.Unlock()
	d.timers.Wait()
}

// drainKey is the context key of the drain's channel.
type drainKey struct{}

// Draining returns a channel that is closed when the drain of the worker
// serving ctx starts. ctx is a request's context under ServeAndDrain (or
// HTTP, RunHTTP, supervisor.MainHTTP), or one derived from it; for any
// other context, such as the one a Handler gets (which is done when the
// drain starts), it returns ctx.Done().
//
// A long-lived handler (a stream, a WebSocket) watches it to wind down in
// its own way: a WebSocket handler sends a close frame with code 1001
// (going away), a stream may keep going until r.Context() is done at the
// drain deadline, and then write its final chunk.
func Draining(ctx context.Context) <-chan struct{} {
	if ch, ok := ctx.Value(drainKey{}).(chan struct{}); ok {
		return ch
	}
	return ctx.Done()
}

// ServeHTTP runs the caller's handler with a ResponseWriter that, during the
// drain, asks for the connection to be closed after the response, and then
// reads what the handler left of the request body so that the close is
// clean. The request's context carries the drain's channel (Draining) and
// is cancelled at the drain deadline.
func (d *drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d.handlers.Add(1)
	defer func() {
		d.handlers.Add(-1)
		d.ring()
	}()
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), drainKey{}, d.drainCh))
	defer cancel()
	stop := context.AfterFunc(d.cut, cancel)
	defer stop()
	r = r.WithContext(ctx)
	dw := &drainWriter{ResponseWriter: w, d: d, h1: r.ProtoMajor == 1}
	d.next.ServeHTTP(dw, r)
	if dw.hijacked || !dw.h1 {
		return // HTTP/2 closes its connections itself, after the GOAWAY
	}
	// A handler that wrote nothing gets a 200 from the server, built from
	// the header map, which can still ask for the close.
	expectContinue := dw.wroteHeader && strings.EqualFold(r.Header.Get("Expect"), "100-continue")
	dw.prepare(http.StatusOK)
	if !dw.closing || d.opts.bodyLimit == 0 || r.Body == nil || r.Body == http.NoBody {
		return
	}
	// After the response header, the server no longer sends 100 Continue,
	// so a client waiting for it may never send the body, and reading
	// would block. Without a header yet, the first read sends 100 Continue
	// and the body follows.
	if expectContinue {
		return
	}
	io.CopyN(io.Discard, r.Body, d.opts.bodyLimit) // an error ends the reading; the server closes anyway
}

// drainWriter is the ResponseWriter a handler sees. Before an HTTP/1.x
// response header goes out, it adds "Connection: close" if the drain has
// started.
type drainWriter struct {
	http.ResponseWriter
	d           *drainer
	h1          bool // HTTP/1.x: HTTP/2 has no Connection header
	wroteHeader bool // the final response header has been written or decided
	closing     bool // it asked for the connection to be closed
	hijacked    bool
}

// prepare runs before the response header with status code is written.
func (w *drainWriter) prepare(code int) {
	if w.wroteHeader || code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		return // informational responses come before the final one
	}
	w.wroteHeader = true
	if !w.h1 || code == http.StatusSwitchingProtocols || !w.d.draining.Load() {
		return // an upgrade keeps its own Connection header
	}
	w.Header().Set("Connection", "close")
	w.closing = true
}

func (w *drainWriter) WriteHeader(code int) {
	w.prepare(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *drainWriter) Write(p []byte) (int, error) {
	w.prepare(http.StatusOK)
	return w.ResponseWriter.Write(p)
}

// ReadFrom keeps the server's sendfile/splice path for io.Copy.
func (w *drainWriter) ReadFrom(src io.Reader) (int64, error) {
	w.prepare(http.StatusOK)
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(w.ResponseWriter, src)
}

// Flush implements http.Flusher.
func (w *drainWriter) Flush() { _ = w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *drainWriter) FlushError() error {
	w.prepare(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack implements http.Hijacker. The connection it returns is tracked:
// the drain waits for it to be closed, until the deadline, and closes it
// then.
func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	w.hijacked = true
	h := &hijackedConn{Conn: c, d: w.d}
	w.d.mu.Lock()
	w.d.hijacked[h] = struct{}{}
	w.d.mu.Unlock()
	return h, rw, nil
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// hijackedConn is a hijacked connection the drain waits for.
type hijackedConn struct {
	net.Conn
	d    *drainer
	once sync.Once
	err  error
}

// Close closes the connection and tells the drain.
func (h *hijackedConn) Close() error {
	h.once.Do(func() {
		h.err = h.Conn.Close()
		h.d.mu.Lock()
		delete(h.d.hijacked, h)
		h.d.mu.Unlock()
		h.d.ring()
	})
	return h.err
}

// NetConn returns the hijacked connection itself.
func (h *hijackedConn) NetConn() net.Conn { return h.Conn }

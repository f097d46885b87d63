package worker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ServeAndDrain serves srv on every listener in ls until ctx is cancelled,
// then drains: it returns once every connection is closed, without failing a
// request, even for HTTP/1.1 keep-alive clients that never retry. It is the
// body of an HTTP worker being retired while its successor already accepts
// on the same listening socket.
//
// When ctx is done (or Serve fails on one of the listeners), ServeAndDrain
// marks the drain as started and then closes the listeners in ls: only this
// process's descriptors, so a successor keeps accepting on the shared socket.
// From then on:
//
//   - every response begun afterwards, on any still-open connection, carries
//     "Connection: close", and the server closes that connection once the
//     response is sent. Before that close, what the handler left unread of
//     the request body is read and discarded (up to WithBodyLimit), because
//     closing a socket with unread data in it sends a TCP reset, and a
//     reset can destroy the response on its way to the client;
//   - a connection with no request in progress is closed once it has been
//     idle for the grace period (WithIdleGrace), counted from its last
//     activity, not from the start of the drain. A client about to reuse a
//     keep-alive connection therefore gets to send its request, and gets its
//     answer with "Connection: close", instead of finding the connection
//     gone.
//
// When no connection remains, ServeAndDrain calls srv.Shutdown, which then
// has nothing to wait for (functions registered with RegisterOnShutdown run
// only then), and returns. With WithDrainTimeout, connections still open
// when the timeout passes are closed with srv.Close, and the error returned
// wraps context.DeadlineExceeded; handlers still running keep running.
// A handler that never finishes (a stream) keeps the drain waiting: let it
// watch ctx too. Hijacked connections belong to their handlers:
// ServeAndDrain neither waits for nor closes them.
//
// Two limits remain that no HTTP/1.1 server can remove:
//
//   - a client that pipelines (sends its next requests without waiting for
//     the responses) loses the requests it sent after the response marked
//     "Connection: close". The connection is closed cleanly, and RFC 9112
//     lets the client retry them;
//   - a client that leaves a connection idle for longer than the grace
//     period and then reuses it without checking whether the server closed
//     it can fail. net/http's client checks, and opens a new connection.
//
// HTTP/2 connections (served through srv's TLS setup) get Go's own answer to
// "Connection: close", a GOAWAY; this path is not tested.
//
// ServeAndDrain takes srv over for the call: srv.Handler is wrapped (nil
// means http.DefaultServeMux, as for http.Server) and srv.ConnState is
// chained (the caller's hook still runs, after ServeAndDrain's bookkeeping).
// The wrapped ResponseWriter implements http.Flusher, http.Hijacker and
// io.ReaderFrom, and has an Unwrap method for http.ResponseController. Like
// any server that was shut down, srv cannot be served again afterwards.
//
// Errors from Serve are returned, joined, except the one caused by the drain
// closing the listener and http.ErrServerClosed. A bad argument returns an
// error at once, with nothing served and nothing closed. The goroutines
// ServeAndDrain starts (one per listener, and the idle timers) have ended
// when it returns.
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

	d := &drainer{
		opts:  o,
		next:  srv.Handler,
		hook:  srv.ConnState,
		conns: make(map[net.Conn]*drainConn),
		bell:  make(chan struct{}, 1),
	}
	if d.next == nil {
		d.next = http.DefaultServeMux
	}
	srv.Handler = d
	srv.ConnState = d.connState

	errc := make(chan error, len(ls))
	var serving sync.WaitGroup
	for _, l := range ls {
		serving.Go(func() { errc <- d.serve(srv, l) })
	}
	var errs []error
	select {
	case <-ctx.Done():
	case err := <-errc:
		errs = append(errs, err)
	}

	expired := d.start(ls)
	serving.Wait() // every accepted connection has now been through StateNew
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	errs = append(errs, d.wait(srv, expired))
	return errors.Join(errs...)
}

// A DrainOption configures ServeAndDrain.
type DrainOption interface{ applyDrain(*drainOptions) }

type drainOptionFunc func(*drainOptions)

func (f drainOptionFunc) applyDrain(o *drainOptions) { f(o) }

// drainOptions holds ServeAndDrain's settings with their defaults.
type drainOptions struct {
	idleGrace time.Duration
	timeout   time.Duration
	bodyLimit int64
}

func defaultDrainOptions() drainOptions {
	return drainOptions{idleGrace: time.Second, bodyLimit: 1 << 20}
}

func (o drainOptions) validate() error {
	switch {
	case o.idleGrace < 0:
		return fmt.Errorf("worker: drain: idle grace %v is negative", o.idleGrace)
	case o.timeout < 0:
		return fmt.Errorf("worker: drain: drain timeout %v is negative", o.timeout)
	case o.bodyLimit < 0:
		return fmt.Errorf("worker: drain: body limit %d is negative", o.bodyLimit)
	}
	return nil
}

// WithIdleGrace sets how long a connection must have been idle before the
// drain closes it (default 1s). It should exceed the longest pause a client
// makes between reading a response and sending its next request on the
// same connection. 0 closes idle connections as soon as the drain starts,
// like http.Server.Shutdown.
func WithIdleGrace(d time.Duration) DrainOption {
	return drainOptionFunc(func(o *drainOptions) { o.idleGrace = d })
}

// WithDrainTimeout bounds the drain: connections still open d after it
// started are closed, whatever they are doing. The default, 0, sets no
// limit: the supervisor kills the worker at its stop timeout.
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

// drainer is the state of one ServeAndDrain call: the handler wrapper and
// the connection table fed by the ConnState hook. The hook runs on the
// server's connection goroutines; the timers closing idle connections run
// on their own. mu guards everything below it.
type drainer struct {
	opts drainOptions
	next http.Handler                   // the caller's handler
	hook func(net.Conn, http.ConnState) // the caller's ConnState hook, or nil

	draining      atomic.Bool // set under mu, once, when the drain starts
	closingListen atomic.Bool // the drain is closing the listeners

	mu      sync.Mutex
	conns   map[net.Conn]*drainConn
	stopped bool           // ServeAndDrain is returning: arm no more timers
	timers  sync.WaitGroup // timer functions armed and not yet run or stopped
	bell    chan struct{}  // rung when a connection goes away during the drain
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

// connState is srv.ConnState: it keeps the connection table, then calls the
// caller's hook.
func (d *drainer) connState(c net.Conn, st http.ConnState) {
	d.track(c, st)
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
		if dc.idle && d.draining.Load() && !d.stopped {
			d.arm(c, dc, d.opts.idleGrace)
		}
	case http.StateHijacked, http.StateClosed:
		if dc := d.conns[c]; dc != nil {
			d.disarm(dc)
			delete(d.conns, c)
		}
		if d.draining.Load() {
			select {
			case d.bell <- struct{}{}:
			default: // already rung
			}
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
// closed, and every idle connection gets a timer for what remains of its
// grace; then the listeners are closed. It returns a channel that fires at
// the drain timeout, or nil if there is none.
func (d *drainer) start(ls []net.Listener) <-chan time.Time {
	var expired <-chan time.Time
	if d.opts.timeout > 0 {
		expired = time.After(d.opts.timeout)
	}
	d.mu.Lock()
	d.draining.Store(true)
	now := time.Now()
	for c, dc := range d.conns {
		if dc.idle {
			d.arm(c, dc, d.opts.idleGrace-now.Sub(dc.last))
		}
	}
	d.mu.Unlock()
	d.closingListen.Store(true)
	for _, l := range ls {
		l.Close() // an error means it is already closed, which is the aim
	}
	return expired
}

// wait returns once no connection is left, or closes those left when
// expired fires; either way it stops the timers and releases srv.
func (d *drainer) wait(srv *http.Server, expired <-chan time.Time) error {
	for {
		d.mu.Lock()
		n := len(d.conns)
		d.mu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-d.bell:
		case <-expired:
			d.stop()
			srv.Close()
			return fmt.Errorf("worker: drain: timeout %v passed with %d connections open, closed them: %w",
				d.opts.timeout, n, context.DeadlineExceeded)
		}
	}
	d.stop()
	// Nothing is left for Shutdown to wait for; the cancelled context
	// guarantees it does not wait anyway.
	done, cancel := context.WithCancel(context.Background())
	cancel()
	if err := srv.Shutdown(done); err != nil {
		return fmt.Errorf("worker: drain: shutdown: %w", err)
	}
	return nil
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

// ServeHTTP runs the caller's handler with a ResponseWriter that, during the
// drain, asks for the connection to be closed after the response, and then
// reads what the handler left of the request body so that the close is
// clean.
func (d *drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	dw := &drainWriter{ResponseWriter: w, d: d}
	d.next.ServeHTTP(dw, r)
	if dw.hijacked {
		return
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

// drainWriter is the ResponseWriter a handler sees. Before the response
// header goes out, it adds "Connection: close" if the drain has started.
type drainWriter struct {
	http.ResponseWriter
	d           *drainer
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
	if code == http.StatusSwitchingProtocols || !w.d.draining.Load() {
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

// Hijack implements http.Hijacker.
func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.hijacked = true
	}
	return c, rw, err
}

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

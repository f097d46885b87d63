package worker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
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
// # Hand-over
//
// Under a handoff supervisor running with hand-over (EnvHandoverFd), a
// draining worker does better than keep its idle connections: it hands
// them to a worker of the newest generation, which serves them as if it
// had accepted them, so that a restart costs its clients no reconnect and
// the old worker exits as soon as its connections are handed, instead of
// waiting for their clients to come back or for the deadline. What is
// handed: plaintext HTTP/1.x connections idle between two requests. The
// server gives such a connection up without reading a byte of it, and
// the kernel keeps what the client sent meanwhile queued with the socket,
// so a request on its way is served by the successor. A connection in the
// middle of a request finishes it first (its response carries no
// "Connection: close") and is handed at its next idle point. What is not:
// TLS connections (the session's keys live in this process), HTTP/2 and
// h2c (drained with GOAWAY as above), hijacked connections (WebSocket),
// and a pipelining client's connection while requests of it are read but
// not answered. ServeAndDrain tells the supervisor which addresses it
// takes connections for while it serves, and takes none once it drains.
// A connection that cannot be handed (no successor takes it, the socket
// pair with the supervisor breaks) is served here again the way described
// above, with "Connection: close" on its next response; with hand-over off
// (WithHandover(false), TLS, no supervisor pair) the drain is exactly the
// one above. The drain logs what it handed, what came back and what it
// took over when it ends ("worker: drain ended").
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
// carried over (ServeAndDrain asks srv, having it answer one request on an
// in-memory connection with its hooks set aside); a call during
// ServeAndDrain is not. Each HTTP/2 connection is served by a server of its
// own built from srv the same way, whose shutdown is the connection's final
// GOAWAY; r.Context().Value(http.ServerContextKey) is that server in an
// HTTP/2 handler. The ResponseWriter handlers see implements http.Flusher,
// http.Hijacker and io.ReaderFrom, and has an Unwrap method for
// http.ResponseController. Like any server that was shut down, srv cannot
// be served again afterwards.
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
		srv:      srv,
		next:     srv.Handler,
		hook:     srv.ConnState,
		conns:    make(map[net.Conn]*drainConn),
		hijacked: make(map[*hijackedConn]struct{}),
		h2:       make(map[*h2Conn]struct{}),
		bell:     make(chan struct{}, 1),
		drainCh:  make(chan struct{}),
	}
	if d.next == nil {
		d.next = http.DefaultServeMux
	}
	d.cut, d.cutNow = context.WithCancel(context.Background())
	defer d.cutNow()
	inner := d.server(srv, tlsConfig)
	d.inner = inner
	defer d.goaways.Wait()
	serveOn := ls
	if tlsConfig != nil {
		serveOn = make([]net.Listener, len(ls))
		for i, l := range ls {
			serveOn[i] = tls.NewListener(l, tlsConfig)
		}
	}
	if o.handover && tlsConfig == nil && !d.h2c {
		d.hand = newDrainHand(d)
	}
	if d.hand != nil {
		inner.ConnContext = d.connContext // requests know their connection: see drainWriter.prepare
		serveOn = d.hand.listen(ls)
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
	// srv has no listener and no connection: Shutdown only starts its
	// RegisterOnShutdown functions.
	shutting.Go(func() { srv.Shutdown(shut) })
	serving.Wait() // every accepted connection has now been through StateNew
	if d.hand != nil {
		d.hand.leftovers()
	}
	close(errc)
	for err := range errc {
		errs = append(errs, err)
	}
	errs = append(errs, d.wait(inner, hurry))
	if d.hand != nil {
		d.hand.end() // nothing more comes for this drain: nothing more to serve again
	}
	d.againWG.Wait()
	d.ended()
	shutting.Wait()
	return errors.Join(errs...)
}

// drainer is the state of one ServeAndDrain call: the handler wrapper and
// the connection table fed by the ConnState hook. The hook runs on the
// server's connection goroutines; the timers closing idle connections run
// on their own. mu guards everything below it.
type drainer struct {
	opts drainOptions
	srv  *http.Server                   // the caller's server, serving no client
	next http.Handler                   // the caller's handler
	hook func(net.Conn, http.ConnState) // the caller's ConnState hook, or nil

	h2TLS         bool          // HTTP/2 is served over TLS (see h2drain.go)
	h2c           bool          // HTTP/2 is served without TLS, beside HTTP/1.x
	http1         bool          // with h2c: HTTP/1.x requests are served too
	keepAlivesOff bool          // srv had its keep-alives turned off
	draining      atomic.Bool   // set under mu, once, when the drain starts
	drainCh       chan struct{} // closed when the drain starts
	cut           context.Context
	cutNow        context.CancelFunc // cancels cut: the drain deadline
	closingListen atomic.Bool        // the drain is closing the listeners
	handlers      atomic.Int64       // handlers running
	h2Served      atomic.Int64       // HTTP/2 connections served
	goaways       sync.WaitGroup     // goroutines running the HTTP/2 drain steps
	inner         *http.Server       // the server ServeAndDrain serves with
	hand          *drainHand         // connection hand-over; nil when off
	again         atomic.Int64       // connections served again (serveAgain) and not yet done
	againWG       sync.WaitGroup     // goroutines serving them
	cutDone       atomic.Bool        // the drain deadline passed: hands in flight are no longer waited for
	handingOver   int                // idle connections the drain started handing; set by start

	mu       sync.Mutex
	conns    map[net.Conn]*drainConn
	hijacked map[*hijackedConn]struct{}
	h2       map[*h2Conn]struct{}         // HTTP/2 connections being served
	connCtx  map[net.Conn]context.Context // with h2TLS: each connection's context, until HTTP/2 takes it
	handing  map[net.Conn]struct{}        // h2c connections being hijacked to be served as HTTP/2
	stopped  bool                         // ServeAndDrain is returning: arm no more timers
	timers   sync.WaitGroup               // timer functions armed and not yet run or stopped
	bell     chan struct{}                // rung when a connection or handler goes away during the drain
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

// ring wakes wait up, if the drain has started.
func (d *drainer) ring() {
	if d.draining.Load() {
		select {
		case d.bell <- struct{}{}:
		default: // already rung
		}
	}
}

// start begins the drain: from now on responses ask for the connection to be
// closed, Draining's channels are closed, with an idle grace every idle
// connection gets a timer for what remains of it, and every HTTP/2
// connection begins its GOAWAY steps; then the listeners are closed, and
// the start is logged.
func (d *drainer) start(ls []net.Listener) {
	if d.hand != nil {
		d.hand.stopTaking()
	}
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
	h2 := len(d.h2)
	for hc := range d.h2 {
		d.goaways.Go(func() { d.goAway(hc) })
	}
	if d.hand != nil {
		d.handingOver = d.hand.start()
	}
	d.mu.Unlock()
	d.closingListen.Store(true)
	for _, l := range ls {
		l.Close() // an error means it is already closed, which is the aim
	}
	if d.opts.logger != nil {
		d.opts.logger.Info("worker: drain started", slog.Int("pid", os.Getpid()),
			slog.Int("connections", conns), slog.Int("idle", idle),
			slog.Int("http2_goaway", h2), slog.Int("handing_over", d.handingOver), slog.Duration("deadline", d.opts.timeout))
	}
}

// ended logs the end of the drain: what was handed over and what came
// back, the connections this process took over in its life, and the hands
// still unsettled.
func (d *drainer) ended() {
	if d.opts.logger == nil {
		return
	}
	var handed, returned, failed, inFlight, received int64
	if h := d.hand; h != nil {
		handed, returned, failed, inFlight = h.handed.Load(), h.returned.Load(), h.failed.Load(), h.inFlight.Load()
		received = h.client.received.Load()
	} else if c := processClient.made.Load(); c != nil {
		received = c.received.Load()
	}
	d.opts.logger.Info("worker: drain ended", slog.Int("pid", os.Getpid()),
		slog.Int64("handed_over", handed), slog.Int64("returned", returned), slog.Int64("hand_failed", failed),
		slog.Int64("received", received), slog.Int64("in_flight", inFlight),
		slog.Int64("http2_connections", d.h2Served.Load()))
}

// handsLeft counts what the drain waits for beside the connections: those
// served again, and, while the pair works and before the deadline, the
// hands neither done nor returned.
func (d *drainer) handsLeft() int64 {
	n := d.again.Load()
	if d.hand.working() && !d.cutDone.Load() {
		n += d.hand.inFlight.Load()
	}
	return n
}

// left counts what the drain still waits for. An HTTP/2 connection
// counts until its server is done with it.
func (d *drainer) left() (conns, idle, hijacked int, handlers int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, dc := range d.conns {
		if dc.idle {
			idle++
		}
	}
	conns = len(d.conns)
	for hc := range d.h2 {
		if d.conns[hc.Conn] == nil {
			conns++ // being handed over, or closed and not yet reported
		}
	}
	return conns, idle, len(d.hijacked), d.handlers.Load()
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
		if conns == 0 && hijacked == 0 && handlers == 0 && d.handsLeft() == 0 {
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
			d.cutDone.Store(true)
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
			d.closeH2()
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

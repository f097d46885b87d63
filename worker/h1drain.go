package worker

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// The HTTP/1.x side of the drain: the connection table fed by the
// ConnState hook, "Connection: close" on every response begun once the
// drain has started, the request body read before that close, and the
// idle connections, left open (or closed after WithIdleGrace) until the
// deadline.

// connState is the server's ConnState: it keeps the connection table, then
// calls the caller's hook.
func (d *drainer) connState(c net.Conn, st http.ConnState) {
	c = underlying(c) // HTTP/2 reports the h2Conn it serves
	d.track(c, st)
	if st == http.StateHijacked && d.handedOver(c) {
		return // not hijacked for the caller's sake: HTTP/2 serves it on
	}
	if d.hook != nil {
		d.hook(c, st)
	}
}

// track keeps the connection table: c's state, and when it went idle.
func (d *drainer) track(c net.Conn, st http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if hc, ok := c.(*handConn); ok {
		hc.setState(st)
		if st == http.StateNew && d.draining.Load() && d.hand.working() {
			hc.handAtIdle() // accepted as the drain started, or handed in just before
		}
	}
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
		delete(d.connCtx, c) // a no-op on a nil map
		d.ring()
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

// closeIdle closes the idle connections that have nothing to read: one
// whose next request is already in the socket is left to be answered,
// with "Connection: close". An HTTP/2 connection is closed once it has
// been idle for h2FlushWait: its server reports it idle when a stream's
// last frame is in its write buffer, and flushes that buffer after the
// report (closed at once, the response's end was lost in 3 of 40 runs).
func (d *drainer) closeIdle() {
	d.mu.Lock()
	var idle []net.Conn
	h2 := make(map[net.Conn]bool, len(d.h2))
	for hc := range d.h2 {
		h2[hc.Conn] = true
	}
	for c, dc := range d.conns {
		if !dc.idle || pending(c) {
			continue
		}
		if wait := h2FlushWait - time.Since(dc.last); h2[c] && wait > 0 {
			d.disarm(dc)
			d.arm(c, dc, wait)
			continue
		}
		idle = append(idle, c)
	}
	d.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
}

// ServeHTTP runs the caller's handler with a ResponseWriter that, during the
// drain, asks for the connection to be closed after the response, and then
// reads what the handler left of the request body so that the close is
// clean. The request's context carries the drain's channel (Draining) and
// is cancelled at the drain deadline.
//
// It is the handler of the server ServeAndDrain serves with. With h2c, an
// HTTP/2 client's preface reaches it as a request ("PRI * HTTP/2.0"): the
// connection is then served as HTTP/2 (see serveH2C).
func (d *drainer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if d.h2c {
		if r.ProtoMajor == 2 {
			d.serveH2C(w, r)
			return
		}
		if !d.http1 {
			panic(http.ErrAbortHandler) // HTTP/1.x is off: close, as net/http does
		}
	}
	d.serveHTTP(w, r)
}

// serveHTTP is ServeHTTP for a request of the caller's.
func (d *drainer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	d.handlers.Add(1)
	defer func() {
		d.handlers.Add(-1)
		d.ring()
	}()
	// r.Context() carries the drain (Draining) and ends at its deadline: it
	// is derived from the connection's, which baseContext or addH2 gave
	// both. Unless the caller's ConnContext replaced that context.
	if ch, _ := r.Context().Value(drainKey{}).(chan struct{}); ch != d.drainCh {
		ctx, cancel := context.WithCancel(context.WithValue(r.Context(), drainKey{}, d.drainCh))
		defer cancel()
		defer context.AfterFunc(d.cut, cancel)()
		r = r.WithContext(ctx)
	}
	dw := &drainWriter{ResponseWriter: w, d: d, h1: r.ProtoMajor == 1}
	if d.hand != nil {
		dw.hc, _ = r.Context().Value(connKey{}).(*handConn)
	}
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
	hc          *handConn // the connection, if it can be handed over
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
	if w.hc != nil && w.d.hand.working() && w.hc.handing() {
		return // handed over at its next idle point instead of closed
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

// Unwrap lets http.ResponseController reach the server's ResponseWriter.
func (w *drainWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package worker

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"
)

// The HTTP/2 side of the drain, on net/http's public API.
//
// The drain needs two things of each HTTP/2 connection: to see and
// interleave the frames the server writes (h2Conn, h2conn.go), and to make
// the server send its final GOAWAY and close the connection once its
// streams are done, which http.Server.Shutdown does to the HTTP/2
// connections a server serves. The server ServeAndDrain serves with cannot
// be shut down at the drain start, since its idle HTTP/1.x connections
// would then be closed. So each HTTP/2 connection is served, wrapped in an
// h2Conn, by a server of its own (h2Server), built for it, whose listener
// accepts that connection alone: net/http serves it as h2c ("prior
// knowledge", http.Protocols.SetUnencryptedHTTP2), and shutting that server
// down is the connection's final GOAWAY. The connection comes from the
// server ServeAndDrain serves with:
//
//   - over TLS, to its TLSNextProto "h2" entry (serveH2TLS), once ALPN
//     chose HTTP/2. The HTTP/2 server sees no TLS, so serveH2TLS checks
//     what it would check (h2TLSAcceptable), and requests go through the
//     handler net/http gives the entry, which sets r.TLS and r.RemoteAddr;
//   - without TLS, as the client preface read as an HTTP/1.x request
//     ("PRI * HTTP/2.0", which net/http passes to the handler), hijacked
//     in ServeHTTP (serveH2C).
//
// Requests get the context the connection's ConnContext gave it, and are
// served by serveHTTP, as HTTP/1.x requests are.

// errCodeInadequateSecurity is HTTP/2's INADEQUATE_SECURITY error code.
const errCodeInadequateSecurity = 0xc

// serveH2TLS serves an HTTP/2 connection negotiated by ALPN: it is the
// "h2" entry of the TLSNextProto of the server ServeAndDrain serves with.
// Like every such function, it owns tc until it returns; h serves requests
// (see http.Server.TLSNextProto).
func (d *drainer) serveH2TLS(_ *http.Server, tc *tls.Conn, h http.Handler) {
	ctx := d.takeConnCtx(tc)
	permit := d.srv.HTTP2 != nil && d.srv.HTTP2.PermitProhibitedCipherSuites
	if !h2TLSAcceptable(tc.ConnectionState(), permit) {
		// As Go's HTTP/2 server rejects it (RFC 9113 §9.2).
		tc.Write(appendFrame(nil, frameGoAway, 0, goAwayPayload(0, errCodeInadequateSecurity)))
		return // net/http closes tc
	}
	hc := newH2Conn(tc, nil)
	hc.tls = true
	d.addH2(hc, h, ctx)
	d.runH2(hc)
}

// h2TLSAcceptable reports whether HTTP/2 may be served over a TLS
// connection (RFC 9113 §9.2): TLS 1.2 or later, and with TLS 1.2 an
// ephemeral key exchange and an AEAD cipher, the only suites of
// crypto/tls's that Appendix A does not prohibit, unless permit.
func h2TLSAcceptable(cs tls.ConnectionState, permit bool) bool {
	switch {
	case cs.Version < tls.VersionTLS12:
		return false
	case cs.Version >= tls.VersionTLS13 || permit:
		return true
	}
	switch cs.CipherSuite {
	case tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
		tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256:
		return true
	}
	return false
}

// serveH2C serves an h2c connection whose client preface net/http read
// as a request, "PRI * HTTP/2.0", followed by an empty header: it hijacks
// the connection, reads the rest of the preface ("SM\r\n\r\n") and serves
// it. It returns when the connection is done.
func (d *drainer) serveH2C(w http.ResponseWriter, r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if c == nil || r.Method != "PRI" || r.RequestURI != "*" {
		w.WriteHeader(http.StatusHTTPVersionNotSupported) // net/http lets no other HTTP/2 request through
		return
	}
	// Counted as a handler until it counts as an HTTP/2 connection, so
	// that the drain cannot end in between.
	d.handlers.Add(1)
	hc := d.hijackH2C(w, c, context.WithoutCancel(r.Context()))
	d.handlers.Add(-1)
	d.ring()
	if hc != nil {
		d.runH2(hc)
	}
}

// hijackH2C hijacks c, reads the end of its client preface and returns it
// added as an HTTP/2 connection (see addH2), or nil if that fails.
func (d *drainer) hijackH2C(w http.ResponseWriter, c net.Conn, ctx context.Context) *h2Conn {
	d.mu.Lock()
	d.handing[c] = struct{}{}
	d.mu.Unlock()
	conn, rw, err := http.NewResponseController(w).Hijack() // reports StateHijacked, which connState keeps from the caller
	d.mu.Lock()
	delete(d.handing, c)
	d.mu.Unlock()
	if err != nil {
		return nil
	}
	conn.SetDeadline(time.Now().Add(prefaceTimeout))
	const rest = "SM\r\n\r\n"
	var b [len(rest)]byte
	if _, err := io.ReadFull(rw.Reader, b[:]); err != nil || string(b[:]) != rest {
		conn.Close()
		return nil
	}
	conn.SetDeadline(time.Time{})
	buffered, _ := rw.Reader.Peek(rw.Reader.Buffered()) // frames read with the preface
	hc := newH2Conn(conn, io.MultiReader(strings.NewReader(clientPreface), bytes.NewReader(bytes.Clone(buffered)), conn))
	d.addH2(hc, http.HandlerFunc(d.serveHTTP), ctx)
	return hc
}

// handedOver reports whether c is being hijacked by serveH2C.
func (d *drainer) handedOver(c net.Conn) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, ok := d.handing[c]
	return ok
}

// addH2 builds hc's server, which calls h with requests whose context
// derives from ctx, and counts hc as served; if the drain has started, hc
// begins its GOAWAY steps at once.
func (d *drainer) addH2(hc *h2Conn, h http.Handler, ctx context.Context) {
	// ctx carries the drain (Draining); the request that brought an h2c
	// connection ended, so its context is no longer done at the drain
	// deadline: this one is, and runH2 releases it.
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(d.cut, cancel)
	hc.endCtx = func() { stop(); cancel() }
	hc.srv = d.h2Server(hc, h, ctx)
	d.h2Served.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.h2[hc] = struct{}{}
	if d.draining.Load() && !d.stopped {
		d.goaways.Go(func() { d.goAway(hc) })
	}
}

// runH2 serves hc until its server is done with it.
func (d *drainer) runH2(hc *h2Conn) {
	l := newConnListener(hc)
	l.done = hc.closing
	hc.srv.Serve(l) // returns once hc is closed, or once the drain shut hc.srv down
	select {
	case <-l.accepted:
		<-hc.done
	default: // it could not serve
		hc.Close()
	}
	hc.endCtx()
	d.mu.Lock()
	delete(d.h2, hc)
	d.mu.Unlock()
	d.ring()
}

// h2State is the ConnState hook of hc's server. It passes on what the
// HTTP/2 server reports of hc, but not the StateNew of its accepting hc:
// the connection was reported when it was accepted. Its StateClosed, the
// server's last word on hc, goes to the caller only for h2c: over TLS, the
// server ServeAndDrain serves with reports it when serveH2TLS returns.
func (d *drainer) h2State(hc *h2Conn) func(net.Conn, http.ConnState) {
	return func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			return
		case http.StateClosed:
			// Over TLS, the server ServeAndDrain serves with reports it
			// (and counts it open until then: its Shutdown waits for it).
			if !hc.tls {
				d.track(hc.Conn, st)
				if d.hook != nil {
					d.hook(hc.Conn, st)
				}
			}
			hc.doneOnce.Do(func() { close(hc.done) }) // net/http reports it once; its HTTP/2 server does not
			return
		}
		hc.report.Do(func() { close(hc.reported) })
		d.connState(hc, st)
	}
}

// goAway runs the drain's HTTP/2 steps on hc (see h2Conn) once its
// HTTP/2 server has reported it (Shutdown reaches only the connections it
// serves already): a PING, the shutdown notice and a second PING, each
// after the ACK of the PING before. Once the client has acknowledged the
// second (at most noticeWait, and not past the drain deadline), it shuts
// hc's server down: its final GOAWAY names the last stream it read, and it
// closes hc once its streams are done.
func (d *drainer) goAway(hc *h2Conn) {
	select {
	case <-hc.reported:
	case <-hc.done:
		return
	}
	stop := make(chan struct{})
	d.goaways.Go(func() { hc.notice(stop) }) // blocks while the server is blocked writing
	wait := time.NewTimer(noticeWait)
	defer wait.Stop()
	select {
	case <-hc.noticed():
	case <-hc.done:
	case <-wait.C:
	case <-d.cut.Done():
	}
	close(stop)
	hc.finish()
	done, cancel := context.WithCancel(context.Background())
	cancel()
	hc.srv.Shutdown(done) // starts the GOAWAY and returns; hc is not idle to net/http, so it is not closed
}

// closeH2 closes every HTTP/2 connection still open.
func (d *drainer) closeH2() {
	d.mu.Lock()
	hcs := slices.Collect(maps.Keys(d.h2))
	d.mu.Unlock()
	for _, hc := range hcs {
		hc.Close()
	}
}

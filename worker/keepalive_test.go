package worker

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"testing"
)

// TestKeepAlivesOff: keepAlivesOff tells a server with keep-alives off
// from one with them on, and nothing of the caller's sees it ask: not the
// handler, not the hooks, and every field is as it was afterwards.
func TestKeepAlivesOff(t *testing.T) {
	for _, off := range []bool{false, true} {
		var seen []string
		p := new(http.Protocols)
		p.SetHTTP1(true)
		srv := &http.Server{
			Handler:      http.HandlerFunc(func(http.ResponseWriter, *http.Request) { seen = append(seen, "handler") }),
			ConnState:    func(net.Conn, http.ConnState) { seen = append(seen, "ConnState") },
			ConnContext:  func(ctx context.Context, _ net.Conn) context.Context { seen = append(seen, "ConnContext"); return ctx },
			BaseContext:  func(net.Listener) context.Context { seen = append(seen, "BaseContext"); return context.Background() },
			TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){"x": nil},
			Protocols:    p,
			ReadTimeout:  1, // would fail the request, were it not set aside
		}
		srv.SetKeepAlivesEnabled(!off)
		if got := keepAlivesOff(srv); got != off {
			t.Errorf("keep-alives off %v: keepAlivesOff says %v", off, got)
		}
		if len(seen) != 0 {
			t.Errorf("keep-alives off %v: the caller's %v saw the question", off, seen)
		}
		after := setAside(srv)
		if after.handler == nil || after.connState == nil || after.connContext == nil || after.baseContext == nil ||
			after.protocols != p || after.tlsNextProto["x"] != nil || len(after.tlsNextProto) != 1 || after.read != 1 ||
			after.errorLog != nil || after.readHeader != 0 || after.write != 0 || after.idle != 0 || after.maxHeaderBytes != 0 {
			t.Errorf("keep-alives off %v: srv's fields were not put back: %+v", off, after)
		}
	}
}

// TestKeepAlivesOffShutDown: a server that was shut down cannot answer;
// keepAlivesOff says keep-alives are on, the default, and returns.
func TestKeepAlivesOffShutDown(t *testing.T) {
	srv := &http.Server{}
	srv.SetKeepAlivesEnabled(false)
	srv.Close()
	if keepAlivesOff(srv) {
		t.Error("keepAlivesOff says off for a server that cannot serve")
	}
}

package worker_test

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// ctxKey is the key of a value the caller's BaseContext or ConnContext
// puts in the context.
type ctxKey struct{}

// TestDrainRequestContext: under every way a request can come, its
// context carries what the caller's BaseContext or ConnContext put in it,
// worker.Draining(r.Context()) is woken at the drain start, and the
// context is done at the drain deadline while the handler can still write
// (ServeAndDrain returns nil: nothing was closed by force), and what it
// writes then reaches the client, over HTTP/2 too (whose server reports
// the connection idle before it flushes the last frames: closed at once,
// 3 of 40 runs of the h2 cases lost them). A ConnContext that replaces the
// context it is given loses none of this.
func TestDrainRequestContext(t *testing.T) {
	for _, tc := range []struct {
		name        string
		proto       string // "h1", "h2c" or "h2tls"
		base, conn  bool   // the caller's BaseContext; the caller's ConnContext
		replaceConn bool   // ConnContext returns a context of its own
	}{
		{name: "http1", proto: "h1"},
		{name: "http1 BaseContext", proto: "h1", base: true},
		{name: "http1 ConnContext", proto: "h1", conn: true},
		{name: "http1 ConnContext replacing", proto: "h1", conn: true, replaceConn: true},
		{name: "h2c", proto: "h2c"},
		{name: "h2c BaseContext", proto: "h2c", base: true},
		{name: "h2 TLS", proto: "h2tls"},
		{name: "h2 TLS ConnContext replacing", proto: "h2tls", conn: true, replaceConn: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			entered, drained := make(chan string, 1), make(chan struct{})
			var drainedFirst bool
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				v, _ := r.Context().Value(ctxKey{}).(string)
				io.WriteString(w, "first\n")
				http.NewResponseController(w).Flush()
				entered <- v
				<-worker.Draining(r.Context())
				drainedFirst = r.Context().Err() == nil // not woken by the deadline
				close(drained)
				<-r.Context().Done()
				io.WriteString(w, "cut\n")
			})}
			want := ""
			if tc.base {
				want = "base"
				srv.BaseContext = func(net.Listener) context.Context {
					return context.WithValue(context.Background(), ctxKey{}, "base")
				}
			}
			if tc.conn {
				want = "conn"
				srv.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
					if tc.replaceConn {
						ctx = context.Background()
					}
					return context.WithValue(ctx, ctxKey{}, "conn")
				}
			}
			var clientConf *tls.Config
			switch tc.proto {
			case "h2c":
				srv.Protocols = new(http.Protocols)
				srv.Protocols.SetHTTP1(true)
				srv.Protocols.SetUnencryptedHTTP2(true)
			case "h2tls":
				srv.TLSConfig, clientConf = selfSignedConfig(t)
			}
			ds := startDrainServer(ctx, t, srv, worker.WithDrainTimeout(300*time.Millisecond), worker.WithDrainLogger(nil))

			var body func() string
			if tc.proto == "h1" {
				c := dialRaw(ctx, t, ds.addr)
				io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
				body = func() string { b, _ := io.ReadAll(c.br); return string(b) }
			} else {
				h := dialH2(ctx, t, ds.addr, clientConf)
				h.get(1, "/stream")
				body = func() string { return h.data(1, "cut\n") }
			}
			var got string
			select {
			case got = <-entered:
			case <-ctx.Done():
				t.Fatal("the handler was not called")
			}
			if got != want {
				t.Errorf("the request's context holds %q, want %q", got, want)
			}
			ds.drain(ctx, t)
			select {
			case <-drained:
			case <-ctx.Done():
				t.Fatal("worker.Draining(r.Context()) was not woken by the drain start")
			}
			if !drainedFirst {
				t.Error("worker.Draining(r.Context()) was woken by the drain deadline, not by its start")
			}
			b := body()
			if err := ds.wait(ctx, t); err != nil {
				t.Errorf("ServeAndDrain: %v", err)
			}
			if !strings.Contains(b, "cut\n") {
				t.Errorf("the response was %q, want it to end with the handler's \"cut\" written once the drain deadline came", b)
			}
		})
	}
}

// data reads the server's frames, answering its PINGs, until stream's
// DATA has brought until (or the connection ends), and returns the data.
func (h *h2Client) data(stream uint32, until string) string {
	h.t.Helper()
	var b strings.Builder
	for !strings.Contains(b.String(), until) {
		f := h.read()
		switch {
		case f.typ == h2Ping && f.flags&h2FlagAck == 0:
			h.writeFrame(h2Ping, h2FlagAck, 0, f.payload)
		case f.typ == h2Data && f.stream == stream:
			b.Write(f.payload)
		case f.typ == h2Data || f.typ == h2Headers || f.typ == h2GoAway:
		default:
			h.t.Fatalf("stream %d: %v before %q came, having read %q", stream, f, until, b.String())
		}
	}
	return b.String()
}

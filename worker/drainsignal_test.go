package worker_test

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// TestDrainSignals: at the drain start, a handler waiting on
// worker.Draining(r.Context()) is woken, RegisterOnShutdown functions run,
// and an idle keep-alive connection is not closed (it gets its answer with
// Connection: close when reused); a hijacked connection keeps
// ServeAndDrain waiting until it is closed.
func TestDrainSignals(t *testing.T) {
	ctx := testContext(t)
	entered, hijacked := make(chan struct{}, 1), make(chan struct{})
	held := make(chan io.Closer, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/wait", func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-worker.Draining(r.Context()):
			w.Header().Set("Content-Length", "8")
			io.WriteString(w, "draining")
		case <-r.Context().Done():
		}
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		c, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		held <- c
		close(hijacked)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "2")
		io.WriteString(w, "ok")
	})
	srv := &http.Server{Handler: mux}
	onShutdown := make(chan struct{})
	srv.RegisterOnShutdown(func() { close(onShutdown) })
	ds := startDrainServer(ctx, t, srv, worker.WithDrainTimeout(time.Minute))

	idle := dialRaw(ctx, t, ds.addr)
	if resp := idle.get(t, "/"); resp.body != "ok" || resp.close {
		t.Fatalf("before the drain: %+v", resp)
	}
	waiting := dialRaw(ctx, t, ds.addr)
	io.WriteString(waiting, "GET /wait HTTP/1.1\r\nHost: test\r\n\r\n")
	<-entered
	hj := dialRaw(ctx, t, ds.addr)
	io.WriteString(hj, "GET /hijack HTTP/1.1\r\nHost: test\r\n\r\n")
	<-hijacked

	ds.drain(ctx, t)
	select {
	case <-onShutdown:
	case <-ctx.Done():
		t.Fatal("RegisterOnShutdown functions did not run at the drain start")
	}
	resp, _, err := readResponse(waiting.br)
	if err != nil || resp.body != "draining" || !resp.close {
		t.Errorf("the waiting handler answered %+v, %v; want \"draining\" with Connection: close", resp, err)
	}
	// The idle connection is still served, and asked to close.
	if resp := idle.get(t, "/"); resp.body != "ok" || !resp.close {
		t.Errorf("idle connection reused during the drain: %+v, want ok with Connection: close", resp)
	}
	if ok, err := idle.closedCleanly(); !ok {
		t.Errorf("idle connection after its last answer: %v", err)
	}
	// Only the hijacked connection is left: the drain waits for it.
	select {
	case err := <-ds.done:
		ds.done <- err
		t.Fatalf("ServeAndDrain returned %v with a hijacked connection open", err)
	case <-time.After(100 * time.Millisecond): // not a timing assertion: the drain has nothing to finish
	}
	(<-held).Close()
	if err := ds.wait(ctx, t); err != nil {
		t.Errorf("ServeAndDrain: %v", err)
	}
}

// TestDrainDeadlineCut: at the drain deadline a streaming handler's
// request context is done, it writes its final chunk and returns, and
// ServeAndDrain returns nil: nothing had to be closed by force.
func TestDrainDeadlineCut(t *testing.T) {
	ctx := testContext(t)
	entered := make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		http.NewResponseController(w).Flush()
		close(entered)
		<-r.Context().Done()
		io.WriteString(w, "cut\n")
	})}
	ds := startDrainServer(ctx, t, srv, worker.WithDrainTimeout(200*time.Millisecond), worker.WithDrainLogger(nil))
	c := dialRaw(ctx, t, ds.addr)
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
	<-entered
	ds.drain(ctx, t)
	if err := ds.wait(ctx, t); err != nil {
		t.Errorf("ServeAndDrain: %v", err)
	}
	b, _ := io.ReadAll(c.br)
	if want := "6\r\nfirst\n\r\n4\r\ncut\n\r\n0\r\n\r\n"; !strings.HasSuffix(string(b), want) {
		t.Errorf("stream ended with %q, want it to end with %q", b, want)
	}
}

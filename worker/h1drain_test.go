package worker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// TestDrainIdleGrace: a keep-alive connection idle when the drain starts is
// closed once it has been idle for the grace period, counted from its last
// request, not from the start of the drain; until then it may still be used,
// and is then told to close.
func TestDrainIdleGrace(t *testing.T) {
	ctx := testContext(t)
	const grace = 500 * time.Millisecond
	const probe = 50 * time.Millisecond // much shorter than the grace

	idle := make(chan net.Conn, 16)
	srv := &http.Server{
		Handler: rollHandler(1),
		ConnState: func(c net.Conn, st http.ConnState) { // chained: ServeAndDrain must keep calling it
			if st == http.StateIdle {
				idle <- c
			}
		},
	}
	ds := startDrainServer(ctx, t, srv, worker.WithIdleGrace(grace))
	waitIdle := func() {
		select {
		case <-idle:
		case <-ctx.Done():
			t.Fatal("the caller's ConnState hook saw no idle connection")
		}
	}

	old := dialRaw(ctx, t, ds.addr)
	old.get(t, "/")
	waitIdle()
	// Let old's grace run out before the drain starts: the one sleep of
	// this test, since what is tested is the passing of time.
	time.Sleep(grace + grace/2)

	a, b := dialRaw(ctx, t, ds.addr), dialRaw(ctx, t, ds.addr)
	a.get(t, "/")
	b.get(t, "/")
	waitIdle()
	waitIdle()
	ds.drain(ctx, t)

	// old was idle longer than the grace: closed at once.
	if ok, err := old.closedCleanly(); !ok {
		t.Fatalf("connection idle past the grace: %v, want EOF", err)
	}
	// a and b became idle just before the drain: still open after old closed.
	for name, c := range map[string]*rawConn{"a": a, "b": b} {
		if open, err := c.stillOpen(ctx, probe); !open {
			t.Fatalf("connection %s closed within the grace: %v", name, err)
		}
	}
	// Used within the grace, a is answered and told to close.
	if resp := a.get(t, "/"); !resp.close || resp.body != "hello" {
		t.Errorf("GET within the grace: %+v, want hello with Connection: close", resp)
	}
	if ok, err := a.closedCleanly(); !ok {
		t.Errorf("after the GET within the grace: %v, want EOF", err)
	}
	// b, never used again, is closed when its grace runs out.
	if ok, err := b.closedCleanly(); !ok {
		t.Errorf("idle connection at the end of the grace: %v, want EOF", err)
	}
	if err := ds.wait(ctx, t); err != nil {
		t.Errorf("ServeAndDrain: %v", err)
	}
}

// TestDrainExpectContinue: during the drain, a request that expects
// "100 Continue" is not stuck: answered without its body being asked for, it
// gets its response, marked for the close, without sending the body;
// answered with nothing, its body is asked for with 100 Continue, read, and
// then answered.
//
// (In the first case net/http itself then waits for the body, until the
// client closes the connection, as it may once answered; this test does.)
func TestDrainExpectContinue(t *testing.T) {
	ctx := testContext(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/answer" {
			io.WriteString(w, "no")
		}
	})}
	ds := startDrainServer(ctx, t, srv, worker.WithIdleGrace(time.Minute))
	answer, silent := dialRaw(ctx, t, ds.addr), dialRaw(ctx, t, ds.addr)
	answer.get(t, "/")
	silent.get(t, "/")
	ds.drain(ctx, t)
	const head = "POST %s HTTP/1.1\r\nHost: test\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

	fmt.Fprintf(answer, head, "/answer")
	if resp, _, err := readResponse(answer.br); err != nil || resp.status != http.StatusOK || resp.body != "no" || !resp.close {
		t.Errorf("answered without the body: %+v, %v; want 200 no with Connection: close", resp, err)
	}
	answer.Close()

	fmt.Fprintf(silent, head, "/silent")
	if resp, _, err := readResponse(silent.br); err != nil || resp.status != http.StatusContinue {
		t.Fatalf("silent handler: %+v, %v; want 100 Continue", resp, err)
	}
	io.WriteString(silent, "body!")
	if resp, _, err := readResponse(silent.br); err != nil || resp.status != http.StatusOK || !resp.close {
		t.Errorf("silent handler: %+v, %v; want 200 with Connection: close", resp, err)
	}
	if ok, err := silent.closedCleanly(); !ok {
		t.Errorf("after the answer: %v, want EOF", err)
	}
	if err := ds.wait(ctx, t); err != nil {
		t.Errorf("ServeAndDrain: %v", err)
	}
}

// TestDrainTimeout: a connection whose handler never finishes is closed at
// the drain timeout, and ServeAndDrain returns while the handler still runs.
func TestDrainTimeout(t *testing.T) {
	ctx := testContext(t)
	entered, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(returned)
		close(entered)
		<-release
	})}
	ds := startDrainServer(ctx, t, srv, worker.WithDrainTimeout(100*time.Millisecond))
	c := dialRaw(ctx, t, ds.addr)
	io.WriteString(c, "GET /block HTTP/1.1\r\nHost: test\r\n\r\n")
	<-entered
	ds.drain(ctx, t)
	err := ds.wait(ctx, t)
	select {
	case <-returned:
		t.Fatal("the handler returned before the timeout closed its connection")
	default:
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("ServeAndDrain: %v, want an error wrapping context.DeadlineExceeded", err)
	}
	if _, started, rerr := readResponse(c.br); rerr == nil || started {
		t.Errorf("blocked request: started %v, %v; want the connection closed without an answer", started, rerr)
	}
	close(release)
	<-returned
}

// TestDrainWriterInterfaces: the wrapped ResponseWriter still flushes,
// hijacks and reaches the server's through http.ResponseController.
func TestDrainWriterInterfaces(t *testing.T) {
	ctx := testContext(t)
	got := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, flusher := w.(http.Flusher)
		_, hijacker := w.(http.Hijacker)
		rc := http.NewResponseController(w)
		deadline := rc.SetWriteDeadline(time.Now().Add(time.Minute))
		if r.URL.Path == "/flush" {
			w.Header().Set("Content-Length", "7")
			io.WriteString(w, "flushed")
			got <- fmt.Sprintf("flusher=%v hijacker=%v deadline=%v flush=%v", flusher, hijacker, deadline, rc.Flush())
			return
		}
		c, brw, err := rc.Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		brw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		brw.Flush()
		c.Close()
		got <- "hijacked"
	})}
	ds := startDrainServer(ctx, t, srv)
	c := dialRaw(ctx, t, ds.addr)
	if resp := c.get(t, "/flush"); resp.body != "flushed" {
		t.Errorf("flushed response %+v", resp)
	}
	if s := <-got; s != "flusher=true hijacker=true deadline=<nil> flush=<nil>" {
		t.Errorf("handler saw %s", s)
	}
	if resp := c.get(t, "/hijack"); resp.body != "hijacked" {
		t.Errorf("hijacked response %+v", resp)
	}
	if s := <-got; s != "hijacked" {
		t.Errorf("handler saw %s", s)
	}
	ds.drain(ctx, t)
	if err := ds.wait(ctx, t); err != nil {
		t.Errorf("ServeAndDrain: %v", err)
	}
}

// TestDrainKeepAlivesDisabled: a server whose keep-alives were turned off
// with SetKeepAlivesEnabled(false) before ServeAndDrain closes every
// connection after one response, as http.Server.Serve would.
func TestDrainKeepAlivesDisabled(t *testing.T) {
	ctx := testContext(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})}
	srv.SetKeepAlivesEnabled(false)
	ds := startDrainServer(ctx, t, srv)
	c := dialRaw(ctx, t, ds.addr)
	if resp := c.get(t, "/"); resp.status != http.StatusOK || !resp.close {
		t.Errorf("got status %d, Connection: close %v; want 200 and close", resp.status, resp.close)
	}
	if ok, err := c.closedCleanly(); !ok {
		t.Errorf("the connection was not closed after the response: %v", err)
	}
}

// BenchmarkDrainWrapper measures what ServeAndDrain's handler wrapper and
// connection tracking cost per request outside a drain: one raw keep-alive
// client sending GETs, against a plain http.Server and against
// ServeAndDrain.
func BenchmarkDrainWrapper(b *testing.B) {
	for _, tc := range []struct {
		name  string
		serve func(ctx context.Context, srv *http.Server, l net.Listener) error
	}{
		{"plain", func(ctx context.Context, srv *http.Server, l net.Listener) error {
			go func() {
				<-ctx.Done()
				srv.Close()
			}()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		}},
		{"ServeAndDrain", func(ctx context.Context, srv *http.Server, l net.Listener) error {
			return worker.ServeAndDrain(ctx, srv, []net.Listener{l})
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- tc.serve(ctx, &http.Server{Handler: rollHandler(1)}, l) }()
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				b.Fatal(err)
			}
			br := bufio.NewReader(c)
			req := []byte("GET / HTTP/1.1\r\nHost: test\r\n\r\n")
			for b.Loop() {
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, _, err := readResponse(br); err != nil {
					b.Fatal(err)
				}
			}
			c.Close()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
		})
	}
}

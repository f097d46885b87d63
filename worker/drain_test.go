package worker_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/worker"
)

// The tests of ServeAndDrain (drain*_test.go, h1drain_test.go) run HTTP
// servers in the test process on real loopback sockets, and talk to them
// with a raw HTTP/1.1 client written over net.Conn: it never retries, and
// it reuses a connection until a response says "Connection: close", so
// every connection a server closes at the wrong moment shows up as a
// failed request. This file holds what they share.

// sharedListeners returns n listeners on one listening socket, as a
// supervisor's workers hold it: each is a descriptor of its own, so closing
// one leaves the others accepting. They are all made before any of them
// serves, because making one puts the shared socket in blocking mode for a
// moment. The original descriptor stays open (the supervisor's copy) until
// the test ends.
func sharedListeners(t *testing.T, n int) (addr string, ls []net.Listener) {
	t.Helper()
	orig, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { orig.Close() })
	for range n {
		f, err := orig.(*net.TCPListener).File()
		if err != nil {
			t.Fatal(err)
		}
		l, err := net.FileListener(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		ls = append(ls, l)
	}
	return orig.Addr().String(), ls
}

// closeWatcher reports when a listener is closed. ServeAndDrain marks the
// drain before it closes its listeners, so the close tells a test that the
// drain has started.
type closeWatcher struct {
	net.Listener
	once   sync.Once
	closed chan struct{}
}

func watchClose(l net.Listener) *closeWatcher {
	return &closeWatcher{Listener: l, closed: make(chan struct{})}
}

func (w *closeWatcher) Close() error {
	w.once.Do(func() { close(w.closed) })
	return w.Listener.Close()
}

// rawResponse is what the raw client understood of a response.
type rawResponse struct {
	status int
	server int    // X-Server
	close  bool   // Connection: close
	body   string // Content-Length bytes
}

// readResponse reads one response. started reports whether any byte of it
// arrived before an error.
func readResponse(br *bufio.Reader) (resp rawResponse, started bool, err error) {
	line, err := br.ReadString('\n')
	if err != nil {
		return resp, line != "", err
	}
	f := strings.Fields(line)
	if len(f) < 2 || !strings.HasPrefix(f[0], "HTTP/1.") {
		return resp, true, fmt.Errorf("status line %q", line)
	}
	resp.status, _ = strconv.Atoi(f[1])
	length := -1
	for {
		line, err = br.ReadString('\n')
		if err != nil {
			return resp, true, err
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		k, v, _ := strings.Cut(line, ":")
		v = strings.TrimSpace(v)
		switch strings.ToLower(k) {
		case "content-length":
			length, _ = strconv.Atoi(v)
		case "connection":
			resp.close = strings.EqualFold(v, "close")
		case "x-server":
			resp.server, _ = strconv.Atoi(v)
		}
	}
	if resp.status < 200 {
		return resp, true, nil // informational: no body, the final response follows
	}
	if length < 0 {
		return resp, true, errors.New("response without Content-Length")
	}
	b := make([]byte, length)
	if _, err := io.ReadFull(br, b); err != nil {
		return resp, true, err
	}
	resp.body = string(b)
	return resp, true, nil
}

// failureKind names how a request failed: "EOF before any response byte"
// is the server closing a connection it thought idle while the request was
// on its way.
func failureKind(err error, started bool) string {
	var what string
	var werr writeError
	switch {
	case errors.As(err, &werr):
		return "write failed: " + failureKind(werr.error, false)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		what = "EOF"
	case errors.Is(err, syscall.ECONNRESET):
		what = "reset"
	case errors.Is(err, syscall.EPIPE):
		what = "broken pipe"
	case errors.Is(err, os.ErrDeadlineExceeded):
		what = "timeout"
	default:
		what = err.Error()
	}
	if started {
		return what + " mid-response"
	}
	return what + " before any response byte"
}

// drainServer runs ServeAndDrain with handler h on a fresh loopback
// listener; cancel starts the drain, which has begun once closed fires, and
// done delivers what ServeAndDrain returned.
type drainServer struct {
	addr   string
	cancel context.CancelFunc
	closed <-chan struct{}
	done   chan error
}

func startDrainServer(ctx context.Context, t *testing.T, srv *http.Server, opts ...worker.DrainOption) *drainServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := watchClose(l)
	sctx, cancel := context.WithCancel(context.Background())
	ds := &drainServer{addr: l.Addr().String(), cancel: cancel, closed: w.closed, done: make(chan error, 1)}
	go func() { ds.done <- worker.ServeAndDrain(sctx, srv, []net.Listener{w}, opts...) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ds.done:
		case <-ctx.Done():
			t.Error("ServeAndDrain did not return")
		}
	})
	return ds
}

// drain starts the drain and returns once it has begun.
func (ds *drainServer) drain(ctx context.Context, t *testing.T) {
	t.Helper()
	ds.cancel()
	select {
	case <-ds.closed:
	case <-ctx.Done():
		t.Fatal("the drain did not close the listener")
	}
}

// wait returns what ServeAndDrain returned.
func (ds *drainServer) wait(ctx context.Context, t *testing.T) error {
	t.Helper()
	select {
	case err := <-ds.done:
		ds.done <- err // for the cleanup
		return err
	case <-ctx.Done():
		t.Fatal("ServeAndDrain did not return")
		return nil
	}
}

// rawConn is one client connection with its reader.
type rawConn struct {
	net.Conn
	br *bufio.Reader
}

func dialRaw(ctx context.Context, t *testing.T, addr string) *rawConn {
	t.Helper()
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	return &rawConn{Conn: c, br: bufio.NewReader(c)}
}

// get sends GET path and returns the answer.
func (c *rawConn) get(t *testing.T, path string) rawResponse {
	t.Helper()
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, started, err := readResponse(c.br)
	if err != nil {
		t.Fatalf("GET %s: %s (%v)", path, failureKind(err, started), err)
	}
	return resp
}

// closedCleanly reports whether the server closed the connection with a FIN
// (the next read is io.EOF), and what the read returned otherwise.
func (c *rawConn) closedCleanly() (bool, error) {
	n, err := c.br.Read(make([]byte, 1))
	if n == 0 && err == io.EOF {
		return true, nil
	}
	if n > 0 {
		err = fmt.Errorf("%d unexpected bytes", n)
	}
	return false, err
}

// stillOpen reports whether the connection stays open and silent for d.
func (c *rawConn) stillOpen(ctx context.Context, d time.Duration) (bool, error) {
	c.SetReadDeadline(time.Now().Add(d))
	defer func() {
		if dl, ok := ctx.Deadline(); ok {
			c.SetReadDeadline(dl)
		}
	}()
	n, err := c.br.Read(make([]byte, 1))
	if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		return true, nil
	}
	return false, err
}

// testContext is done a little before the test's own deadline, so a wait fails with a message
// instead of the test binary being killed.
func testContext(t *testing.T) context.Context {
	d, ok := t.Deadline()
	if !ok {
		d = time.Now().Add(2 * time.Minute)
	}
	ctx, cancel := context.WithDeadline(context.Background(), d.Add(-5*time.Second))
	t.Cleanup(cancel)
	return ctx
}

func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

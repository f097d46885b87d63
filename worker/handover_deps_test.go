package worker

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// What hand-over relies on in net/http's HTTP/1.x server, pinned here so
// that a Go release that changes it fails these tests, not hand-overs.

// recConn records the length of each Read the server starts, and can make
// the next Read fail with a timeout without reading.
type recConn struct {
	net.Conn
	reads   chan int
	timeout atomic.Bool
	// failLong: from now on, a Read of more than a byte that starts after
	// the server wrote (the idle read after a response) times out. Counting
	// reads instead raced the server's first Read, already waiting when the
	// test set failLong (the test then hung).
	failLong atomic.Bool
	writes   atomic.Int64 // bytes written
	wAfter   atomic.Int64 // bytes written after the timeout
	closed   chan struct{}
	once     sync.Once
}

func (c *recConn) Read(p []byte) (int, error) {
	c.reads <- len(p)
	if len(p) > 1 && c.failLong.Load() && c.writes.Load() > 0 {
		c.timeout.Store(true)
	}
	if c.timeout.Load() {
		return 0, &net.OpError{Op: "read", Net: "tcp", Err: os.ErrDeadlineExceeded}
	}
	return c.Conn.Read(p)
}

func (c *recConn) Write(p []byte) (int, error) {
	if c.timeout.Load() {
		c.wAfter.Add(int64(len(p)))
	}
	c.writes.Add(int64(len(p)))
	return c.Conn.Write(p)
}

func (c *recConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

// serveRec serves one TCP connection through a recConn and returns the
// client's end and the recConn.
func serveRec(t *testing.T) (net.Conn, *bufio.Reader, *recConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	client.SetDeadline(deadline(t))
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	rc := &recConn{Conn: sc, reads: make(chan int, 16), closed: make(chan struct{})}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})}
	cl := newConnListener(rc)
	cl.done = rc.closed
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(cl)
	}()
	t.Cleanup(func() {
		rc.Close()
		<-served
		srv.Close()
	})
	return client, bufio.NewReader(client), rc
}

// nextRead returns the length of the next Read the server starts.
func (c *recConn) nextRead(t *testing.T) int {
	t.Helper()
	select {
	case n := <-c.reads:
		return n
	case <-c.closed:
		t.Fatal("the server closed the connection instead of reading")
	}
	return 0
}

// TestNetHTTPIdleReadAsksWholeBuffer: net/http reads a request with a Read
// as long as its buffer (the connection's first Read), and, idle after a
// response, waits for the next one with a Read of the same length; during
// the handler its background read asks for one byte.
func TestNetHTTPIdleReadAsksWholeBuffer(t *testing.T) {
	client, br, rc := serveRec(t)
	first := rc.nextRead(t)
	if first < 512 {
		t.Fatalf("first Read of %d bytes, want net/http's buffer", first)
	}
	for i := range 3 {
		if _, err := io.WriteString(client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		var sawBackground bool
		for {
			n := rc.nextRead(t)
			if n == 1 {
				sawBackground = true
				continue
			}
			if n != first {
				t.Fatalf("request %d: idle Read of %d bytes, want %d (the whole buffer)", i, n, first)
			}
			break
		}
		if !sawBackground {
			t.Errorf("request %d: no background Read of 1 byte during the handler", i)
		}
	}
}

// TestNetHTTPTimeoutClosesSilently: a Read of an idle connection that
// returns a timeout makes net/http close it without writing a byte: the
// kick of hand-over, whose Close then hands the socket over.
func TestNetHTTPTimeoutClosesSilently(t *testing.T) {
	client, br, rc := serveRec(t)
	rc.failLong.Store(true) // the first Read gets the request; the idle one times out
	io.WriteString(client, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		for {
			select {
			case <-rc.reads:
			case <-rc.closed:
				return
			}
		}
	}()
	defer func() { <-drained }()
	select {
	case <-rc.closed:
	case <-time.After(time.Until(deadline(t))):
		t.Fatal("net/http did not close the connection whose idle Read timed out")
	}
	if n := rc.wAfter.Load(); n != 0 {
		t.Errorf("net/http wrote %d bytes after the idle Read timed out, want none", n)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("client read after the close: %v, want EOF", err)
	}
}

package endpoint

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/listener"
)

// get sends a GET for path on c and returns the status line and body.
func get(t *testing.T, c net.Conn, path string) string {
	t.Helper()
	if d, ok := t.Deadline(); ok {
		c.SetDeadline(d)
	}
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Status + " " + strings.TrimSpace(string(b))
}

// TestStopKeepsQueuedConnections: a connection that arrives while the endpoint is stopped
// waits in the kernel's queue and is answered once it serves again (as after an upgrade).
func TestStopKeepsQueuedConnections(t *testing.T) {
	a, err := listener.ParseAddr("tcp://127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e, err := Open("health", a, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	running := make(chan struct{})
	draining := false
	h := Health(running, func() bool { return draining })
	log := zaptest.NewLogger(t)
	if err := e.Serve(h, log); err != nil {
		t.Fatal(err)
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", e.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	if got := get(t, dial(), "/livez"); got != "200 OK ok" {
		t.Errorf("/livez: %q", got)
	}
	if got := get(t, dial(), "/readyz"); got != "503 Service Unavailable starting" {
		t.Errorf("/readyz before running: %q", got)
	}
	close(running)
	e.Stop()
	queued := dial() // accepted by the kernel, not by a server
	if err := e.Serve(h, log); err != nil {
		t.Fatal(err)
	}
	if got := get(t, queued, "/readyz"); got != "200 OK ready" {
		t.Errorf("/readyz queued across a stop: %q", got)
	}
	draining = true
	e.Stop()
	c := dial()
	if err := e.Serve(h, log); err != nil {
		t.Fatal(err)
	}
	if got := get(t, c, "/readyz"); got != "503 Service Unavailable shutting down" {
		t.Errorf("/readyz draining: %q", got)
	}
}

// TestAdoptedSocket: a socket handed over by fd is served; one this program does not serve is
// closed.
func TestAdoptedSocket(t *testing.T) {
	a, _ := listener.ParseAddr("tcp://127.0.0.1:0")
	e, err := Open("metrics", a, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	fd, err := e.Fd()
	if err != nil || fd <= 0 {
		t.Fatalf("Fd: %d, %v", fd, err)
	}
	unwanted, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	if e2, err := Open("metrics", listener.Addr{}, unwanted); e2 != nil || err != nil {
		t.Errorf("Open of an unwanted socket: %v, %v; want nil, nil", e2, err)
	}
	if _, err := unix.FcntlInt(uintptr(unwanted), unix.F_GETFD, 0); err != unix.EBADF {
		t.Errorf("the unwanted socket's fd %d is still open (%v)", unwanted, err)
	}
	kept, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	e2, err := Open("metrics", listener.Addr{Network: "tcp", Address: "127.0.0.1:1"}, kept)
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	if e2.Addr() != e.Addr() {
		t.Errorf("adopted socket serves %s, want the inherited %s", e2.Addr(), e.Addr())
	}
	if err := e2.Serve(Health(nil, nil), zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", e.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got := get(t, c, "/livez"); got != "200 OK ok" {
		t.Errorf("/livez on the adopted socket: %q", got)
	}

	var none *Server
	if fd, err := none.Fd(); fd != 0 || err != nil || none.Addr() != "" {
		t.Errorf("a nil Server: fd %d, %v, addr %q", fd, err, none.Addr())
	}
	if e3, err := Open("none", listener.Addr{}, 0); e3 != nil || err != nil {
		t.Errorf("Open without an address or fd: %v, %v; want nil, nil", e3, err)
	}
}

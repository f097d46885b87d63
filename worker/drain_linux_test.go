package worker_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"

	"github.com/handoff-dev/handoff/worker"
	"golang.org/x/sys/unix"
)

// TCP states, from the kernel's include/net/tcp_states.h.
const (
	tcpClose     = 7 // after a reset, or once fully closed
	tcpCloseWait = 8 // the peer sent a FIN; this side has not closed yet
)

// tcpState returns the kernel's state of the client socket c. A socket
// that received the peer's FIN and nothing else stays in CLOSE_WAIT until it
// is closed; a reset moves it to CLOSE. Reads cannot tell the two apart once
// the FIN has arrived: they return EOF either way.
func tcpState(t *testing.T, c net.Conn) uint8 {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
	}); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.State
}

// uploadResult is what the client of TestDrainClosesAfterResponse saw.
type uploadResult struct {
	wrote error       // uploading the rest of the body
	resp  rawResponse // the answer
	read  error       // reading the answer
	end   error       // reading after the answer: nil for EOF
	state uint8       // TCP state once the server has closed
}

// TestDrainClosesAfterResponse: during the drain a response carries
// "Connection: close" and the connection then ends with a FIN; and a POST
// whose handler ignores a large body, most of which arrives after the handler
// returned, still gets its whole upload accepted, its answer, and a clean
// close: no reset, as the socket's TCP state shows once the server is done.
func TestDrainClosesAfterResponse(t *testing.T) {
	ctx := testContext(t)
	const bodySize = 900 << 10 // above net/http's own 256 KiB, below the 1 MiB limit
	const firstPart = 1 << 10

	run := func(t *testing.T, opts ...worker.DrainOption) uploadResult {
		entered, release, returned := make(chan struct{}), make(chan struct{}), make(chan struct{})
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
		mux.HandleFunc("POST /upload", func(w http.ResponseWriter, r *http.Request) {
			defer close(returned)
			close(entered)
			<-release
			io.WriteString(w, "ignored") // the body stays unread
		})
		ds := startDrainServer(ctx, t, &http.Server{Handler: mux}, opts...)

		idle := dialRaw(ctx, t, ds.addr)
		if resp := idle.get(t, "/"); resp.close {
			t.Fatal("Connection: close before the drain")
		}
		up := dialRaw(ctx, t, ds.addr)
		fmt.Fprintf(up, "POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n", bodySize)
		if _, err := up.Write(make([]byte, firstPart)); err != nil {
			t.Fatal(err)
		}
		<-entered
		ds.drain(ctx, t)

		// A keep-alive connection used during the drain is told to close.
		if resp := idle.get(t, "/"); !resp.close || resp.body != "hello" {
			t.Errorf("GET during the drain: %+v, want hello with Connection: close", resp)
		}
		if ok, err := idle.closedCleanly(); !ok {
			t.Errorf("after the GET during the drain: %v, want EOF", err)
		}

		close(release)
		<-returned
		var res uploadResult
		_, res.wrote = up.Write(make([]byte, bodySize-firstPart))
		var started bool
		if res.resp, started, res.read = readResponse(up.br); res.read != nil {
			res.read = fmt.Errorf("%s: %w", failureKind(res.read, started), res.read)
		} else if ok, err := up.closedCleanly(); !ok {
			res.end = fmt.Errorf("want EOF, got %v", err)
		}
		if err := ds.wait(ctx, t); err != nil { // the server has closed its end
			t.Errorf("ServeAndDrain: %v", err)
		}
		res.state = tcpState(t, up.Conn)
		return res
	}

	res := run(t)
	if res.wrote != nil || res.read != nil {
		t.Fatalf("upload: write %v, read %v; want both to succeed", res.wrote, res.read)
	}
	if res.resp.status != http.StatusOK || res.resp.body != "ignored" || !res.resp.close {
		t.Errorf("POST: %+v, want 200 ignored with Connection: close", res.resp)
	}
	if res.end != nil {
		t.Errorf("after the POST: %v", res.end)
	}
	if res.state != tcpCloseWait {
		t.Errorf("client socket in TCP state %d, want CLOSE_WAIT (%d): the server reset the connection", res.state, tcpCloseWait)
	}

	// For contrast, without reading the body: net/http answers, sends a FIN,
	// and closes half a second later with the upload unread, which resets
	// the connection (or the upload meets the closed socket, which also
	// resets it). Timing decides which, so this is only logged.
	res = run(t, worker.WithBodyLimit(0))
	t.Logf("control, body limit 0: upload %v; answer %+v (%v); then %v; TCP state %d (CLOSE is %d: reset)",
		res.wrote, res.resp, res.read, res.end, res.state, tcpClose)
}

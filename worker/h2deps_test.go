package worker

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// The HTTP/2 drain (h2drain.go) rests on three behaviours of net/http that
// its documentation implies without spelling out. Each test here fails,
// with a message naming what changed, the day a Go release changes one.

// TestNetHTTPPassesPRIToHandler: a server without h2c passes an h2c
// client preface, "PRI * HTTP/2.0", to its Handler as a request (as it
// does for x/net/http2/h2c), and the connection can be hijacked there with
// the rest of the preface unread. serveH2C takes h2c connections so.
func TestNetHTTPPassesPRIToHandler(t *testing.T) {
	got := make(chan string, 1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			got <- "hijack: " + err.Error()
			return
		}
		defer c.Close()
		rest := make([]byte, 6)
		io.ReadFull(rw.Reader, rest)
		got <- r.Method + " " + r.RequestURI + " " + r.Proto + " " + string(rest)
	})}
	client := serveOne(t, srv)
	io.WriteString(client, clientPreface)
	want := "PRI * HTTP/2.0 SM\r\n\r\n"
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("the handler got %q, want %q", s, want)
		}
	case <-time.After(time.Until(testDeadline(t))):
		t.Fatal("net/http no longer passes the h2c preface to the Handler: serveH2C cannot take h2c connections")
	}
}

// TestNetHTTPShutdownGoAway: a server whose Protocols are h2c alone serves
// a connection as HTTP/2, and once it has reported the connection's state,
// its Shutdown sends that connection a GOAWAY without closing it. goAway
// sends each connection's final GOAWAY so, once its state was reported.
func TestNetHTTPShutdownGoAway(t *testing.T) {
	reported := make(chan struct{}, 1)
	p := new(http.Protocols)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{
		Protocols: p,
		ConnState: func(_ net.Conn, st http.ConnState) {
			if st == http.StateActive {
				select {
				case reported <- struct{}{}:
				default:
				}
			}
		},
	}
	client := serveOne(t, srv)
	io.WriteString(client, clientPreface)
	client.Write(appendEmptySettings(nil))
	br := bufio.NewReader(client)
	if typ := readFrameType(t, br); typ != 0x4 {
		t.Fatalf("first frame type %d, want SETTINGS: net/http no longer serves h2c by Protocols", typ)
	}
	select {
	case <-reported:
	case <-time.After(time.Until(testDeadline(t))):
		t.Fatal("net/http's HTTP/2 server no longer reports StateActive for a new connection")
	}
	done, cancel := context.WithCancel(context.Background())
	cancel()
	srv.Shutdown(done)
	for {
		typ := readFrameType(t, br)
		if typ == frameGoAway {
			return
		}
	}
}

// serveOne serves srv on one in-memory connection and returns the
// client's end; the test's cleanup closes both and waits for Serve.
func serveOne(t *testing.T, srv *http.Server) net.Conn {
	t.Helper()
	server, client := net.Pipe()
	client.SetDeadline(testDeadline(t))
	l := newConnListener(server)
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(l)
	}()
	t.Cleanup(func() {
		client.Close()
		srv.Close()
		l.Close()
		<-served
	})
	return client
}

// testDeadline is a little before the test's own deadline, so that a wait
// fails with a message instead of the test binary being killed.
func testDeadline(t *testing.T) time.Time {
	d, ok := t.Deadline()
	if !ok {
		return time.Now().Add(time.Minute)
	}
	return d.Add(-5 * time.Second)
}

func appendEmptySettings(b []byte) []byte { return append(b, 0, 0, 0, 0x4, 0, 0, 0, 0, 0) }

// readFrameType reads one frame and returns its type.
func readFrameType(t *testing.T, br *bufio.Reader) uint8 {
	t.Helper()
	var hdr [frameHeaderLen]byte
	if _, err := io.ReadFull(br, hdr[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2])
	if _, err := br.Discard(n); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	return hdr[3]
}

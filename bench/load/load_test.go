package load_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/handoff-dev/handoff/bench/load"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testContext is bounded by the test's deadline, less a margin to report.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx := t.Context()
	if d, ok := t.Deadline(); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, d.Add(-5*time.Second))
		t.Cleanup(cancel)
	}
	return ctx
}

// checkFDs fails the test if it ends with more open descriptors than it
// started with. Call it first, so that its cleanup runs last.
func checkFDs(t *testing.T) {
	t.Helper()
	before := countFDs(t)
	t.Cleanup(func() {
		if after := countFDs(t); after > before {
			t.Errorf("%d descriptors open after the test, %d before", after, before)
		}
	})
}

func countFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// okServer is a real net/http server on 127.0.0.1 that answers 200 and
// counts what it served; a POST must carry body.
type okServer struct {
	*httptest.Server
	requests atomic.Int64
	posts    atomic.Int64
	conns    atomic.Int64
}

func newOKServer(t *testing.T, body []byte, h func(w http.ResponseWriter, r *http.Request)) *okServer {
	t.Helper()
	s := &okServer{}
	s.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, err := io.ReadAll(r.Body)
		if err != nil || r.Method == http.MethodPost && !bytes.Equal(got, body) ||
			r.Method == http.MethodGet && len(got) != 0 {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if r.Method == http.MethodPost {
			s.posts.Add(1)
		}
		if h != nil {
			h(w, r)
		} else {
			w.Write([]byte("hello\n"))
		}
		s.requests.Add(1)
	}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func (s *okServer) addr() string { return s.Listener.Addr().String() }

var defaultBody = []byte("a body for the test\n")

func TestExactCounts(t *testing.T) {
	const clients, perClient = 4, 50
	for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
		for _, method := range []load.Method{load.GET, load.POST, load.Mixed} {
			t.Run(mode.String()+"/"+method.String(), func(t *testing.T) {
				checkFDs(t)
				srv := newOKServer(t, defaultBody, nil)
				res, err := load.Run(testContext(t), srv.addr(),
					load.WithClients(clients), load.WithRequests(perClient), load.WithMode(mode),
					load.WithMethod(method), load.WithBody(defaultBody), load.WithDuration(time.Minute))
				if err != nil {
					t.Fatal(err)
				}
				st := res.Stats()
				const total = clients * perClient
				if st.Requests != total || st.OK() != total || len(res.Samples) != total {
					t.Errorf("requests %d, ok %d, samples %d; want %d each (failures %v)",
						st.Requests, st.OK(), len(res.Samples), total, res.Failures)
				}
				if got := srv.requests.Load(); got != total {
					t.Errorf("server served %d requests, want %d", got, total)
				}
				wantPosts := map[load.Method]int64{load.GET: 0, load.POST: total, load.Mixed: total / 2}[method]
				if got := srv.posts.Load(); got != wantPosts {
					t.Errorf("server saw %d POSTs, want %d", got, wantPosts)
				}
				posts := 0
				for _, s := range res.Samples {
					if s.Method == load.POST {
						posts++
					}
				}
				if int64(posts) != wantPosts {
					t.Errorf("samples record %d POSTs, want %d", posts, wantPosts)
				}
				if res.Dials != clients || srv.conns.Load() != clients {
					t.Errorf("dials %d, server connections %d; want %d (one keep-alive connection per client)",
						res.Dials, srv.conns.Load(), clients)
				}
				if res.Aborted != 0 {
					t.Errorf("aborted %d, want 0", res.Aborted)
				}
			})
		}
	}
}

// TestResponseFraming checks that both clients read chunked bodies and obey
// Connection: close, counting exactly.
func TestResponseFraming(t *testing.T) {
	const n = 20
	for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
		t.Run(mode.String()+"/chunked", func(t *testing.T) {
			checkFDs(t)
			srv := newOKServer(t, defaultBody, func(w http.ResponseWriter, _ *http.Request) {
				w.Write([]byte("part one\n"))
				w.(http.Flusher).Flush() // forces Transfer-Encoding: chunked
				w.Write([]byte("part two\n"))
			})
			res := run(t, srv.addr(), load.WithMode(mode), load.WithRequests(n), load.WithMethod(load.Mixed),
				load.WithBody(defaultBody))
			expect(t, res, map[load.Kind]int{load.OK: n})
			if res.Dials != 1 {
				t.Errorf("dials %d, want 1", res.Dials)
			}
		})
		t.Run(mode.String()+"/close", func(t *testing.T) {
			checkFDs(t)
			srv := newOKServer(t, defaultBody, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Connection", "close")
				w.Write([]byte("bye\n"))
			})
			res := run(t, srv.addr(), load.WithMode(mode), load.WithRequests(n))
			expect(t, res, map[load.Kind]int{load.OK: n})
			if res.Dials != n || srv.conns.Load() != n {
				t.Errorf("dials %d, server connections %d; want %d (a new connection after each close)",
					res.Dials, srv.conns.Load(), n)
			}
		})
	}
}

// scriptServer accepts on 127.0.0.1 and runs serve on each connection,
// closing it when serve returns.
type scriptServer struct {
	ln       net.Listener
	wg       sync.WaitGroup
	accepted atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
}

func newScriptServer(t *testing.T, serve func(c net.Conn, br *bufio.Reader)) *scriptServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptServer{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Go(func() {
				defer func() {
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
					c.Close()
				}()
				serve(c, bufio.NewReader(c))
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *scriptServer) addr() string { return s.ln.Addr().String() }

// readRequest reads one whole request, body included.
func readRequest(br *bufio.Reader) error {
	req, err := http.ReadRequest(br)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, req.Body)
	return err
}

// respondThenClose answers every request on a connection with resp and
// closes the connection after the first, but only once it has read the
// next request (or the client closed).
func respond(resp string, keep bool) func(net.Conn, *bufio.Reader) {
	return func(c net.Conn, br *bufio.Reader) {
		for readRequest(br) == nil {
			if _, err := io.WriteString(c, resp); err != nil || !keep {
				return
			}
		}
	}
}

func run(t *testing.T, addr string, opts ...load.Option) *load.Result {
	t.Helper()
	opts = append([]load.Option{load.WithDuration(time.Minute), load.WithFailureBackoff(0)}, opts...)
	res, err := load.Run(testContext(t), addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// expect checks the kinds of the whole run exactly; missing kinds must be 0.
func expect(t *testing.T, res *load.Result, want map[load.Kind]int) {
	t.Helper()
	st := res.Stats()
	for k := range load.NumKinds {
		if got := st.ByKind[k]; got != want[load.Kind(k)] {
			t.Errorf("%s: %d, want %d", load.Kind(k), got, want[load.Kind(k)])
		}
	}
	if t.Failed() && len(res.Failures) > 0 {
		t.Logf("first failure: %v", res.Failures[0].Err)
	}
}

func TestFailureKinds(t *testing.T) {
	const n = 3
	closedPort := func(t *testing.T) string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr
	}
	script := func(serve func(net.Conn, *bufio.Reader)) func(*testing.T) string {
		return func(t *testing.T) string { return newScriptServer(t, serve).addr() }
	}
	for _, tc := range []struct {
		name   string
		server func(*testing.T) string
		kind   load.Kind
		dials  int
	}{
		{"closed port", closedPort, load.Refused, n},
		{"accept, read the request, close", script(respond("", false)), load.EOFBeforeResponse, n},
		{"close after the headers", script(respond("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart", false)),
			load.EOFMidResponse, n},
		{"close inside the header", script(respond("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n", false)),
			load.EOFMidResponse, n},
		{"reset after the request", script(func(c net.Conn, br *bufio.Reader) {
			if readRequest(br) == nil {
				c.(*net.TCPConn).SetLinger(0) // Close sends RST
			}
		}), load.Reset, n},
		{"500", func(t *testing.T) string {
			return newOKServer(t, defaultBody, func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(http.StatusInternalServerError)
			}).addr()
		}, load.Non200, 1},
		{"garbage", script(respond("SMTP ready\r\n\r\n", false)), load.Other, n},
		{"no answer", script(func(c net.Conn, br *bufio.Reader) {
			if readRequest(br) == nil {
				io.Copy(io.Discard, br) // until the client gives up and closes
			}
		}), load.Timeout, n},
	} {
		for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
			t.Run(tc.name+"/"+mode.String(), func(t *testing.T) {
				checkFDs(t)
				addr := tc.server(t)
				res := run(t, addr, load.WithMode(mode), load.WithRequests(n),
					load.WithTimeout(200*time.Millisecond))
				expect(t, res, map[load.Kind]int{tc.kind: n})
				if res.Dials != tc.dials {
					t.Errorf("dials %d, want %d", res.Dials, tc.dials)
				}
				if len(res.Failures) != n && tc.kind != load.OK {
					t.Fatalf("%d failures in detail, want %d", len(res.Failures), n)
				}
				for i, f := range res.Failures {
					if f.Kind != tc.kind || f.Err == nil || f.Reused != (tc.dials < n && i > 0) {
						t.Errorf("failure %+v: want kind %s, an error, reused only on a kept connection", f, tc.kind)
					}
				}
			})
		}
	}
}

// TestKeepAliveCloseRace uses a server that answers one request per
// connection and closes the connection after reading the next one: the
// race a restart causes, made deterministic. The raw client sees every
// second request fail; net/http retries the GETs and hides it, but not the
// POSTs.
func TestKeepAliveCloseRace(t *testing.T) {
	const n = 10
	for _, tc := range []struct {
		mode   load.Mode
		method load.Method
		want   map[load.Kind]int
		dials  int
	}{
		{load.Raw, load.GET, map[load.Kind]int{load.OK: n / 2, load.EOFBeforeResponse: n / 2}, n / 2},
		{load.Raw, load.POST, map[load.Kind]int{load.OK: n / 2, load.EOFBeforeResponse: n / 2}, n / 2},
		{load.NetHTTP, load.GET, map[load.Kind]int{load.OK: n}, n},
		{load.NetHTTP, load.POST, map[load.Kind]int{load.OK: n / 2, load.EOFBeforeResponse: n / 2}, n / 2},
	} {
		t.Run(tc.mode.String()+"/"+tc.method.String(), func(t *testing.T) {
			checkFDs(t)
			srv := newScriptServer(t, func(c net.Conn, br *bufio.Reader) {
				if readRequest(br) != nil {
					return
				}
				if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"); err != nil {
					return
				}
				readRequest(br) // then close without a word
			})
			res := run(t, srv.addr(), load.WithMode(tc.mode), load.WithMethod(tc.method), load.WithRequests(n))
			expect(t, res, tc.want)
			if res.Dials != tc.dials {
				t.Errorf("dials %d, want %d", res.Dials, tc.dials)
			}
			for _, f := range res.Failures {
				if !f.Reused {
					t.Errorf("failure %+v not marked as sent on a reused connection", f)
				}
			}
		})
	}
}

// TestStopIsGraceful stops unbounded load once the server has served some
// requests: every request the server answered is in the result, and none
// is lost or aborted.
func TestStopIsGraceful(t *testing.T) {
	for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
		t.Run(mode.String(), func(t *testing.T) {
			checkFDs(t)
			const enough = 200
			reached := make(chan struct{})
			var once sync.Once
			var srv *okServer
			srv = newOKServer(t, defaultBody, func(w http.ResponseWriter, _ *http.Request) {
				if srv.requests.Load() >= enough {
					once.Do(func() { close(reached) })
				}
			})
			ctx := testContext(t)
			l, err := load.Start(ctx, srv.addr(), load.WithMode(mode), load.WithClients(8),
				load.WithMethod(load.Mixed), load.WithBody(defaultBody), load.WithDuration(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			select {
			case <-reached:
			case <-ctx.Done():
			}
			res := l.Stop()
			if res != l.Stop() {
				t.Error("a second Stop returned another result")
			}
			st := res.Stats()
			if st.OK() < enough || st.Failed() != 0 || res.Aborted != 0 {
				t.Errorf("ok %d (want ≥ %d), failed %d, aborted %d", st.OK(), enough, st.Failed(), res.Aborted)
			}
			if got := srv.requests.Load(); got != int64(st.OK()) {
				t.Errorf("server served %d, the result records %d", got, st.OK())
			}
		})
	}
}

// TestCancelAborts cancels the context while every client waits on a server
// that never answers: the requests in flight are aborted, not recorded.
func TestCancelAborts(t *testing.T) {
	for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
		t.Run(mode.String(), func(t *testing.T) {
			checkFDs(t)
			const clients = 4
			arrived := make(chan struct{}, clients)
			srv := newScriptServer(t, func(c net.Conn, br *bufio.Reader) {
				if readRequest(br) == nil {
					arrived <- struct{}{}
					io.Copy(io.Discard, br)
				}
			})
			ctx, cancel := context.WithCancel(testContext(t))
			defer cancel()
			l, err := load.Start(ctx, srv.addr(), load.WithMode(mode), load.WithClients(clients),
				load.WithTimeout(time.Hour), load.WithDuration(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			for range clients {
				select {
				case <-arrived:
				case <-ctx.Done():
					t.Fatal("the requests did not arrive")
				}
			}
			cancel()
			<-l.Done()
			res := l.Stop()
			if res.Aborted != clients || len(res.Samples) != 0 {
				t.Errorf("aborted %d, samples %d; want %d and 0", res.Aborted, len(res.Samples), clients)
			}
		})
	}
}

func TestRunForDuration(t *testing.T) {
	checkFDs(t)
	srv := newOKServer(t, defaultBody, nil)
	res, err := load.Run(testContext(t), srv.addr(), load.WithClients(2), load.WithDuration(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	st := res.Stats()
	if st.Requests == 0 || st.Failed() != 0 || int64(st.OK()) != srv.requests.Load() {
		t.Errorf("requests %d, failed %d, server served %d", st.Requests, st.Failed(), srv.requests.Load())
	}
}

func TestBadInput(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		addr string
		opts []load.Option
		is   error
	}{
		{"10.1.2.3:80", nil, load.ErrNotLoopback},
		{"192.168.0.1:8080", nil, load.ErrNotLoopback},
		{"localhost:80", nil, load.ErrNotLoopback},
		{"example.com:80", nil, load.ErrNotLoopback},
		{"127.0.0.1", nil, load.ErrNotLoopback},
		{"127.0.0.1:0", nil, load.ErrNotLoopback},
		{"[fe80::1%lo]:80", nil, load.ErrNotLoopback},
		{"127.0.0.1:9", []load.Option{load.WithClients(0)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithClients(70000)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithDuration(0)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithTimeout(-1)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithRequests(-1)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithFailureBackoff(-1)}, nil},
		{"127.0.0.1:9", []load.Option{load.WithPath("no-slash")}, nil},
		{"127.0.0.1:9", []load.Option{load.WithPath("/a b")}, nil},
		{"127.0.0.1:9", []load.Option{load.WithPath("/a\r\nX: y")}, nil},
		{"127.0.0.1:9", []load.Option{load.WithBody(make([]byte, 2<<20))}, nil},
		{"127.0.0.1:9", []load.Option{load.WithMode(load.Mode(9))}, nil},
		{"127.0.0.1:9", []load.Option{load.WithMethod(load.Method(9))}, nil},
		{"127.0.0.1:9", []load.Option{load.WithFailureDetails(-1)}, nil},
	} {
		l, err := load.Start(ctx, tc.addr, tc.opts...)
		if err == nil {
			l.Stop()
			t.Errorf("Start(%q, …) succeeded", tc.addr)
			continue
		}
		if tc.is != nil && !errors.Is(err, tc.is) {
			t.Errorf("Start(%q): %v, want %v", tc.addr, err, tc.is)
		}
	}
	for _, s := range []string{"", "fast", "HEAD"} {
		if _, err := load.ParseMethod(s); err == nil {
			t.Errorf("ParseMethod(%q) succeeded", s)
		}
		if _, err := load.ParseMode(s); err == nil {
			t.Errorf("ParseMode(%q) succeeded", s)
		}
	}
}

func TestIPv6Loopback(t *testing.T) {
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	checkFDs(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})}
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(ln) })
	defer wg.Wait()
	defer srv.Close()
	res := run(t, ln.Addr().String(), load.WithRequests(5))
	expect(t, res, map[load.Kind]int{load.OK: 5})
}

// TestWithDial runs both clients over TLS through WithDial: every
// connection is made by the dial function, and counted once.
func TestWithDial(t *testing.T) {
	const clients, perClient = 3, 20
	for _, mode := range []load.Mode{load.Raw, load.NetHTTP} {
		t.Run(mode.String(), func(t *testing.T) {
			checkFDs(t)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.Copy(io.Discard, r.Body)
				if r.TLS == nil {
					w.WriteHeader(http.StatusBadRequest)
				}
			}))
			srv.StartTLS()
			t.Cleanup(srv.Close)
			var calls atomic.Int64
			dial := func(ctx context.Context, addr string) (net.Conn, error) {
				calls.Add(1)
				d := tls.Dialer{Config: srv.Client().Transport.(*http.Transport).TLSClientConfig}
				return d.DialContext(ctx, "tcp", addr)
			}
			res, err := load.Run(testContext(t), srv.Listener.Addr().String(), load.WithClients(clients),
				load.WithRequests(perClient), load.WithMode(mode), load.WithMethod(load.Mixed),
				load.WithDial(dial), load.WithDuration(time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			if st := res.Stats(); st.OK() != clients*perClient {
				t.Errorf("ok %d of %d requests (failures %v)", st.OK(), clients*perClient, res.Failures)
			}
			if res.Dials != clients || calls.Load() != clients {
				t.Errorf("dials %d, dial calls %d; want %d", res.Dials, calls.Load(), clients)
			}
		})
	}
}

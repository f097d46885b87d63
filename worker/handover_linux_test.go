package worker

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/internal/connpass"
)

// The hand-over tests run real worker processes (the test binary
// re-executed, see init below) on one shared listening socket, each with a
// socket pair to the test, which plays the supervisor's router: a Hand
// from one worker goes to the next as a Conn, whose Ack becomes a Done for
// the first (or, refused, the connection goes back). Raw keep-alive
// clients dial once and never retry.

// hoWorkerEnv makes the re-executed test binary a hand-over test worker:
// its value is the worker's id, which it answers in X-Server.
const hoWorkerEnv = "HANDOFF_TEST_HANDOVER_WORKER"

func init() {
	id := os.Getenv(hoWorkerEnv)
	if id == "" {
		return
	}
	os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	logger := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	drainTimeout := 20 * time.Second
	if d, err := time.ParseDuration(os.Getenv("HANDOFF_TEST_DRAIN_TIMEOUT")); err == nil {
		drainTimeout = d
	}
	if d, err := time.ParseDuration(os.Getenv("HANDOFF_TEST_HAND_SEND_TIMEOUT")); err == nil {
		handSendTimeout = d
	}
	opts := []DrainOption{WithDrainLogger(logger), WithDrainTimeout(drainTimeout)}
	if os.Getenv("HANDOFF_TEST_HANDOVER_OFF") != "" {
		opts = append(opts, WithHandover(false))
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		<-Draining(r.Context()) // a response begun during the drain
		w.Header().Set("X-Server", id)
		io.WriteString(w, "slow")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("X-Server", id)
		io.WriteString(w, "hello")
	})
	err := Run(context.Background(), HTTP(&http.Server{Handler: mux}, opts...))
	logger.Info("test: exit", slog.Int("sockets", openSockets()), slog.Any("error", err))
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

// openSockets counts this process's socket descriptors.
func openSockets() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	n := 0
	for _, e := range ents {
		if link, _ := os.Readlink("/proc/self/fd/" + e.Name()); strings.HasPrefix(link, "socket:") {
			n++
		}
	}
	return n
}

// hoWorker is a worker process and the test's end of its socket pair.
type hoWorker struct {
	id     int
	proc   *os.Process
	state  *os.ProcessState
	pair   *connpass.Conn // nil without hand-over
	serves chan []string  // its Serve messages
	stderr syncBuffer
	exited chan struct{}
	err    error
}

type syncBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{} // rung after each write
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	defer func() {
		select {
		case b.wrote <- struct{}{}:
		default:
		}
	}()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// line returns the first JSON log line whose msg is msg.
func (w *hoWorker) line(t *testing.T, msg string) map[string]any {
	t.Helper()
	for _, l := range strings.Split(w.stderr.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == msg {
			return m
		}
	}
	t.Fatalf("worker %d logged no %q:\n%s", w.id, msg, w.stderr.String())
	return nil
}

// startHoWorker starts worker id on the listening socket lf, with a
// socket pair unless noPair.
// pairSndbufEnv, in startHoWorker's env, sets the send buffer of the
// worker's end of its pair (the kernel's minimum, for a small number), so
// that a few unread messages fill it.
const pairSndbufEnv = "HANDOFF_TEST_PAIR_SNDBUF"

func startHoWorker(t *testing.T, id int, lf *os.File, noPair bool, env ...string) *hoWorker {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := &hoWorker{id: id, serves: make(chan []string, 16), exited: make(chan struct{})}
	w.stderr.wrote = make(chan struct{}, 1)
	env = append(append(os.Environ(), hoWorkerEnv+"="+strconv.Itoa(id), "LISTEN_FDS=1", "GORACE=atexit_sleep_ms=0"), env...)
	// The descriptors go to the worker raw: os/exec's ExtraFiles would
	// call Fd, which makes the shared listening socket blocking, and a
	// running worker's accept with it (its drain then hangs closing the
	// listener).
	r, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	files := []uintptr{0, 1, wr.Fd(), rawFd(t, lf)}
	var remote *os.File
	if !noPair {
		w.pair, remote, err = connpass.Pair()
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, rawFd(t, remote))
		env = append(env, EnvHandoverFd+"=4")
		for _, kv := range env {
			if v, ok := strings.CutPrefix(kv, pairSndbufEnv+"="); ok {
				n, _ := strconv.Atoi(v)
				if err := syscall.SetsockoptInt(int(rawFd(t, remote)), syscall.SOL_SOCKET, syscall.SO_SNDBUF, n); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	pid, _, err := syscall.StartProcess(exe, []string{exe, "-test.run=^$"}, &syscall.ProcAttr{
		Env:   env,
		Files: files,
		// A worker must not outlive a test binary killed at its
		// timeout: it would hold whatever the binary inherited.
		Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	})
	wr.Close()
	if remote != nil {
		remote.Close()
	}
	if err != nil {
		r.Close()
		t.Fatal(err)
	}
	w.proc, _ = os.FindProcess(pid)
	go func() {
		io.Copy(&w.stderr, r)
		r.Close()
		w.state, w.err = w.proc.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() {
		w.proc.Kill()
		<-w.exited
		if w.pair != nil {
			w.pair.Close()
		}
		if strings.Contains(w.stderr.String(), "DATA RACE") {
			t.Errorf("worker %d:\n%s", id, w.stderr.String())
		}
	})
	return w
}

// stop sends SIGTERM and waits for the worker to exit cleanly.
func (w *hoWorker) stop(t *testing.T) {
	t.Helper()
	w.proc.Signal(syscall.SIGTERM)
	w.wait(t)
}

func (w *hoWorker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w.exited:
	case <-time.After(time.Until(deadline(t))):
		w.proc.Signal(syscall.SIGQUIT) // its goroutines, in its stderr
		<-w.exited
		t.Fatalf("worker %d did not exit:\n%s", w.id, w.stderr.String())
	}
	if w.err != nil || !w.state.Success() {
		t.Fatalf("worker %d: %v %v\n%s", w.id, w.err, w.state, w.stderr.String())
	}
	if n := w.line(t, "test: exit")["sockets"]; n != 1.0 && !(w.pair == nil && n == 0.0) {
		t.Errorf("worker %d exited with %v sockets open, want only its socket pair", w.id, n)
	}
}

// waitServe waits for the worker to say it takes connections (a Serve
// with addresses), or, with none, that it stopped taking them.
func (w *hoWorker) waitServe(t *testing.T, some bool) {
	t.Helper()
	for {
		select {
		case addrs := <-w.serves:
			if (len(addrs) > 0) == some {
				return
			}
		case <-time.After(time.Until(deadline(t))):
			t.Fatalf("worker %d sent no Serve (addresses: %v):\n%s", w.id, some, w.stderr.String())
		}
	}
}

// router plays the supervisor: hands from workers[i] go to workers[i+1];
// with giveBack, every hand is returned to its sender; deaf, it stops
// reading a worker's pair once the worker drains (Serve with no address).
type router struct {
	t        *testing.T
	workers  []*hoWorker
	giveBack bool
	deaf     bool
	wg       sync.WaitGroup

	mu      sync.Mutex
	nextID  uint64
	pending map[uint64]routed
}

type routed struct {
	from *hoWorker
	id   uint64
	fd   int
}

func newRouter(t *testing.T) *router {
	r := &router{t: t, pending: make(map[uint64]routed)}
	t.Cleanup(func() {
		for _, w := range r.workers {
			w.proc.Kill()
			<-w.exited
			w.pair.Close() // ends the reading goroutine
		}
		r.wg.Wait()
		for _, p := range r.pending {
			syscall.Close(p.fd)
		}
	})
	return r
}

// start starts a worker on lf (startHoWorker with a pair), adds it, and
// waits until it serves.
func (r *router) start(t *testing.T, id int, lf *os.File, env ...string) *hoWorker {
	t.Helper()
	w := startHoWorker(t, id, lf, false, env...)
	r.add(w)
	w.waitServe(t, true)
	return w
}

func (r *router) add(w *hoWorker) {
	r.mu.Lock()
	r.workers = append(r.workers, w)
	i := len(r.workers) - 1
	r.mu.Unlock()
	r.wg.Go(func() { r.read(w, i) })
}

func (r *router) read(w *hoWorker, i int) {
	for {
		m, err := w.pair.Recv()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrClosed) {
				r.t.Errorf("router: worker %d: %v", w.id, err)
			}
			return
		}
		switch m.Kind {
		case connpass.KindServe:
			w.serves <- m.Addrs
			if len(m.Addrs) == 0 && r.deaf {
				return // a supervisor that stops reading this worker's pair
			}
		case connpass.KindHand:
			r.mu.Lock()
			var to *hoWorker
			if i+1 < len(r.workers) && !r.giveBack {
				to = r.workers[i+1]
			}
			r.nextID++
			id := r.nextID
			r.pending[id] = routed{from: w, id: m.ID, fd: m.Fd}
			r.mu.Unlock()
			if to == nil || to.pair.Send(connpass.Msg{Kind: connpass.KindConn, ID: id, Addr: m.Addr, Fd: m.Fd}) != nil {
				r.settle(id, false)
			}
		case connpass.KindAck:
			r.settle(m.ID, m.OK)
		default:
			r.t.Errorf("router: worker %d sent %v", w.id, m.Kind)
		}
	}
}

// settle ends routed connection id: Done to its sender, or the connection
// back.
func (r *router) settle(id uint64, ok bool) {
	r.mu.Lock()
	p, found := r.pending[id]
	delete(r.pending, id)
	r.mu.Unlock()
	if !found {
		r.t.Errorf("router: Ack of unknown %d", id)
		return
	}
	if ok {
		p.from.pair.Send(connpass.Msg{Kind: connpass.KindDone, ID: p.id, Fd: -1})
	} else {
		p.from.pair.Send(connpass.Msg{Kind: connpass.KindConn, ID: p.id, Returned: true, Addr: "returned", Fd: p.fd})
	}
	syscall.Close(p.fd)
}

// rawFd returns f's descriptor without making it blocking (os.File.Fd
// would).
func rawFd(t *testing.T, f *os.File) uintptr {
	t.Helper()
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var fd uintptr
	rc.Control(func(s uintptr) { fd = s })
	return fd
}

// sharedSocket returns a listening socket's address and a file of it to
// pass to workers.
func sharedSocket(t *testing.T) (string, *os.File) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := l.(*net.TCPListener).File()
	l.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rc, err := f.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	rc.Control(func(fd uintptr) { syscall.SetNonblock(int(fd), true) }) // as the supervisor keeps it
	return l.Addr().String(), f
}

// hoClient is a raw keep-alive client on one connection.
type hoClient struct {
	c  net.Conn
	br *bufio.Reader
}

func dialHo(t *testing.T, addr string) *hoClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(deadline(t))
	return &hoClient{c: c, br: bufio.NewReader(c)}
}

// hoAnswer is what a request got.
type hoAnswer struct {
	server int
	close  bool
	body   string
}

func (c *hoClient) get(path string) (hoAnswer, error) {
	if _, err := io.WriteString(c.c, "GET "+path+" HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		return hoAnswer{}, err
	}
	return c.read()
}

func (c *hoClient) read() (hoAnswer, error) {
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		return hoAnswer{}, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	id, _ := strconv.Atoi(resp.Header.Get("X-Server"))
	return hoAnswer{server: id, close: resp.Close, body: string(b)}, err
}

func (c *hoClient) mustGet(t *testing.T, path string) hoAnswer {
	t.Helper()
	a, err := c.get(path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return a
}

// hammer runs n clients that send requests back to back on one
// connection each until stop is closed, and counts what they got.
type hammer struct {
	stop     chan struct{}
	progress chan struct{} // rung after each answer
	wg       sync.WaitGroup
	answered atomic.Int64
	mu       sync.Mutex
	failures []string
	closes   int
	last     []int // server of each client's last answer
	served   map[int]int
}

func startHammer(t *testing.T, clients []*hoClient) *hammer {
	h := &hammer{stop: make(chan struct{}), progress: make(chan struct{}, 1), last: make([]int, len(clients)), served: map[int]int{}}
	for i, c := range clients {
		h.wg.Go(func() {
			for {
				select {
				case <-h.stop:
					return
				default:
				}
				a, err := c.get("/")
				h.mu.Lock()
				switch {
				case err != nil:
					h.failures = append(h.failures, err.Error())
				case a.body != "hello":
					h.failures = append(h.failures, fmt.Sprintf("body %q", a.body))
				default:
					h.last[i] = a.server
					h.served[a.server]++
					if a.close {
						h.closes++
					}
				}
				failed := err != nil || a.close
				h.mu.Unlock()
				h.answered.Add(1)
				select {
				case h.progress <- struct{}{}:
				default:
				}
				if failed {
					return // never redial
				}
			}
		})
	}
	t.Cleanup(h.end)
	return h
}

func (h *hammer) end() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	h.wg.Wait()
}

// waitAll waits until every client's last answer came from server id.
func (h *hammer) waitAll(t *testing.T, id int) {
	t.Helper()
	for time.Now().Before(deadline(t)) {
		h.mu.Lock()
		all := len(h.failures) == 0
		for _, s := range h.last {
			all = all && s == id
		}
		failed := len(h.failures) > 0
		h.mu.Unlock()
		if all || failed {
			return
		}
		select {
		case <-h.progress:
		case <-time.After(time.Until(deadline(t))):
		}
	}
}

// rollHandover runs rounds hand-overs under n hammering clients: worker
// r drains while worker r+1 takes its connections. It checks that no
// request failed, no answer said "Connection: close", no client redialled,
// each drained worker handed every connection and exited while its
// clients were still connected.
func rollHandover(t *testing.T, clients, rounds int) {
	checkFdLeak(t)
	addr, lf := sharedSocket(t)
	rt := newRouter(t)
	w := rt.start(t, 1, lf)
	cs := make([]*hoClient, clients)
	for i := range cs {
		cs[i] = dialHo(t, addr)
		if a := cs[i].mustGet(t, "/"); a.server != 1 {
			t.Fatalf("client %d answered by %d before any other worker ran", i, a.server)
		}
	}
	h := startHammer(t, cs)
	for r := 1; r <= rounds; r++ {
		next := rt.start(t, r+1, lf)
		w.stop(t) // SIGTERM; returns once it exited
		ended := w.line(t, "worker: drain ended")
		if ended["handed_over"] != float64(clients) || ended["in_flight"] != 0.0 || ended["returned"] != 0.0 {
			t.Errorf("round %d: worker %d ended its drain with %v, want all %d handed over", r, w.id, ended, clients)
		}
		if started := w.line(t, "worker: drain started"); started["handing_over"] == nil {
			t.Errorf("drain started without handing_over: %v", started)
		}
		if r > 1 {
			if got := ended["received"]; got != float64(clients) {
				t.Errorf("worker %d received %v connections, want %d", w.id, got, clients)
			}
		}
		h.waitAll(t, r+1)
		w = next
	}
	h.end()
	t.Logf("%d requests answered; per server %v", h.answered.Load(), h.served)
	if len(h.failures) > 0 || h.closes > 0 {
		t.Errorf("%d failed requests (%v), %d answers with Connection: close", len(h.failures), h.failures[:min(len(h.failures), 5)], h.closes)
	}
	for i, s := range h.last {
		if s != rounds+1 {
			t.Errorf("client %d last answered by %d, want %d", i, s, rounds+1)
		}
	}
	for _, c := range cs {
		c.c.Close()
	}
	w.stop(t)
}

// TestHandoverTwoWorkers: keep-alive clients that never redial keep their
// connection through hand-overs between worker processes, with no failed
// request and no "Connection: close"; each old worker exits once its
// connections are handed, while its clients are still connected.
func TestHandoverTwoWorkers(t *testing.T) {
	rollHandover(t, 8, 2)
}

// TestHandoverRace: clients hammering without pause through three
// hand-overs (the workers run with the race detector when the test does).
func TestHandoverRace(t *testing.T) {
	rollHandover(t, 32, 3)
}

// TestHandoverMidRequest: a connection in the middle of a request when the
// drain starts gets its response without "Connection: close", then is
// handed over at its idle point, like the idle one beside it.
func TestHandoverMidRequest(t *testing.T) {
	checkFdLeak(t)
	addr, lf := sharedSocket(t)
	rt := newRouter(t)
	a := rt.start(t, 1, lf)
	busy, idle := dialHo(t, addr), dialHo(t, addr)
	idle.mustGet(t, "/")
	if _, err := io.WriteString(busy.c, "GET /slow HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	b := rt.start(t, 2, lf)
	a.proc.Signal(syscall.SIGTERM) // /slow answers once the drain started
	ans, err := busy.read()
	if err != nil || ans.body != "slow" || ans.server != 1 || ans.close {
		t.Fatalf("the request in flight got %+v, %v; want \"slow\" from 1 without Connection: close", ans, err)
	}
	a.wait(t)
	for name, c := range map[string]*hoClient{"busy": busy, "idle": idle} {
		if ans := c.mustGet(t, "/"); ans.server != 2 || ans.close {
			t.Errorf("%s connection after the drain: %+v, want served by 2, kept open", name, ans)
		}
	}
	if got := a.line(t, "worker: drain ended")["handed_over"]; got != 2.0 {
		t.Errorf("handed_over %v, want 2", got)
	}
	busy.c.Close()
	idle.c.Close()
	b.stop(t)
}

// TestHandoverReturned: a connection the supervisor gives back is served
// again by the worker that handed it, the old drain's way: its next
// response says "Connection: close", and the worker then exits.
func TestHandoverReturned(t *testing.T) {
	checkFdLeak(t)
	addr, lf := sharedSocket(t)
	rt := newRouter(t)
	rt.giveBack = true
	a := rt.start(t, 1, lf)
	c := dialHo(t, addr)
	c.mustGet(t, "/")
	a.proc.Signal(syscall.SIGTERM)
	a.waitServe(t, false)
	// A request that comes before the kick is served and the connection
	// handed at its next idle point; once returned, its next response
	// says "Connection: close".
	for {
		ans := c.mustGet(t, "/")
		if ans.server != 1 {
			t.Fatalf("after the drain started: %+v, want served by 1", ans)
		}
		if ans.close {
			break
		}
	}
	if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("after the Connection: close answer: %v, want EOF", err)
	}
	a.wait(t)
	ended := a.line(t, "worker: drain ended")
	if ended["returned"] != 1.0 || ended["handed_over"] != 0.0 {
		t.Errorf("drain ended %v, want 1 returned, none handed over", ended)
	}
}

// TestHandoverOff: without a socket pair, with the pair broken, or with
// WithHandover(false), the drain is the old one: an idle connection stays
// open, and its next request is answered with "Connection: close".
func TestHandoverOff(t *testing.T) {
	for _, tc := range []struct {
		name   string
		noPair bool
		broken bool
		env    []string
	}{
		{name: "no pair", noPair: true},
		{name: "broken pair", broken: true},
		{name: "WithHandover(false)", env: []string{"HANDOFF_TEST_HANDOVER_OFF=1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkFdLeak(t)
			addr, lf := sharedSocket(t)
			a := startHoWorker(t, 1, lf, tc.noPair, tc.env...)
			var serves sync.WaitGroup
			if !tc.noPair {
				// The test reads the pair: what a worker sends must find no hand.
				serves.Go(func() {
					for {
						m, err := a.pair.Recv()
						if err != nil {
							return
						}
						if m.Kind != connpass.KindServe {
							t.Errorf("worker sent %v", m.Kind)
						}
						if m.Fd >= 0 {
							syscall.Close(m.Fd)
						}
						a.serves <- m.Addrs
					}
				})
				t.Cleanup(func() {
					a.proc.Kill()
					<-a.exited
					a.pair.Close()
					serves.Wait()
				})
			}
			c := dialHo(t, addr)
			c.mustGet(t, "/")
			if tc.broken {
				a.pair.Close()
				serves.Wait()
			}
			a.proc.Signal(syscall.SIGTERM)
			// The drain has started once the listener is closed: a new
			// connection is then refused (the test's copy of the socket
			// is open but nobody accepts; so watch the worker's log).
			waitLog(t, a, "worker: drain started")
			if ans := c.mustGet(t, "/"); ans.server != 1 || !ans.close {
				t.Errorf("during the drain: %+v, want served by 1 with Connection: close", ans)
			}
			if _, err := c.br.ReadByte(); !errors.Is(err, io.EOF) {
				t.Errorf("after the Connection: close answer: %v, want EOF", err)
			}
			a.wait(t)
			ended := a.line(t, "worker: drain ended")
			if ended["handed_over"] != 0.0 {
				t.Errorf("drain ended %v, want nothing handed over", ended)
			}
		})
	}
}

// waitLog waits for the worker to log msg.
func waitLog(t *testing.T, w *hoWorker, msg string) {
	t.Helper()
	for !strings.Contains(w.stderr.String(), `"msg":"`+msg+`"`) {
		select {
		case <-w.exited:
			t.Fatalf("worker %d exited before logging %q:\n%s", w.id, msg, w.stderr.String())
		case <-w.stderr.wrote:
		case <-time.After(time.Until(deadline(t))):
			t.Fatalf("worker %d did not log %q", w.id, msg)
		}
	}
}

// TestHandoverMidHeaders: a request whose first header lines fill
// net/http's read buffer exactly is read in two full-buffer Reads with the connection
// still in StateNew (net/http says Active only once the header is read),
// so the state alone would take the second Read for an idle point. The
// drain starts while the server waits in it: the connection must not be
// handed with half a request consumed; the old worker serves the request,
// and hands the connection at its next idle point.
func TestHandoverMidHeaders(t *testing.T) {
	checkFdLeak(t)
	addr, lf := sharedSocket(t)
	rt := newRouter(t)
	a := rt.start(t, 1, lf)
	c := dialHo(t, addr)
	// Header lines ending exactly at the buffer's end: net/http consumes
	// them all and reads the next bytes into the whole buffer again.
	head := "GET / HTTP/1.1\r\nHost: test\r\nX-Long: "
	if _, err := io.WriteString(c.c, head+strings.Repeat("x", 4096-len(head)-2)+"\r\n"); err != nil {
		t.Fatal(err)
	}
	waitRead(t, c.c) // the server read the 4096 bytes and waits for more
	b := rt.start(t, 2, lf)
	a.proc.Signal(syscall.SIGTERM)
	waitLog(t, a, "worker: drain started")
	if _, err := io.WriteString(c.c, "X-More: y\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	ans, err := c.read()
	if err != nil || ans.server != 1 || ans.body != "hello" {
		t.Fatalf("the request split at the buffer's length got %+v, %v; want \"hello\" from 1", ans, err)
	}
	a.wait(t)
	if ans := c.mustGet(t, "/"); ans.server != 2 || ans.close {
		t.Errorf("the next request: %+v, want served by 2, kept open", ans)
	}
	if got := a.line(t, "worker: drain ended")["handed_over"]; got != 1.0 {
		t.Errorf("handed_over %v, want 1", got)
	}
	c.c.Close()
	b.stop(t)
}

// waitRead waits until the server side of the client connection c has
// read everything c sent: its receive queue in /proc/net/tcp is empty.
func waitRead(t *testing.T, c net.Conn) {
	t.Helper()
	local, remote := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	// The server's socket: local address the client's remote, and back.
	want := fmt.Sprintf("%08X:%04X %08X:%04X", hostOrder(remote.IP), remote.Port, hostOrder(local.IP), local.Port)
	for {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			if len(f) > 4 && f[1]+" "+f[2] == want && strings.HasSuffix(f[4], ":00000000") {
				return
			}
		}
		if time.Now().After(deadline(t)) {
			t.Fatalf("the server never read what the client sent (%s)", want)
		}
		time.Sleep(time.Millisecond) // the kernel says nothing when a queue empties
	}
}

// hostOrder is an IPv4 address as /proc/net/tcp prints it (the 32-bit
// number in the host's byte order, little-endian here).
func hostOrder(ip net.IP) uint32 {
	v4 := ip.To4()
	return uint32(v4[0]) | uint32(v4[1])<<8 | uint32(v4[2])<<16 | uint32(v4[3])<<24
}

// TestHandoverSupervisorDeaf: a supervisor that stops reading a worker's
// pair (stopped, hung) holds no net/http goroutine of the worker in
// Close: once the pair is full, each hand gives up after the send timeout
// and its connection is served here again; the worker ends its drain at
// its deadline and exits. What the supervisor got before it stopped
// reading stays with it (in flight).
func TestHandoverSupervisorDeaf(t *testing.T) {
	checkFdLeak(t)
	addr, lf := sharedSocket(t)
	rt := newRouter(t)
	rt.deaf = true
	a := rt.start(t, 1, lf, pairSndbufEnv+"=1", "HANDOFF_TEST_HAND_SEND_TIMEOUT=200ms", "HANDOFF_TEST_DRAIN_TIMEOUT=2s")
	const n = 24
	var clients []*hoClient
	for range n {
		c := dialHo(t, addr)
		c.mustGet(t, "/")
		clients = append(clients, c)
	}
	b := rt.start(t, 2, lf)
	a.proc.Signal(syscall.SIGTERM)
	select {
	case <-a.exited:
	case <-time.After(time.Until(deadline(t))):
		t.Fatalf("the worker did not exit: its drain waits on the deaf supervisor\n%s", a.stderr.String())
	}
	ended := a.line(t, "worker: drain ended")
	failed, inFlight := ended["hand_failed"].(float64), ended["in_flight"].(float64)
	if failed < 1 || inFlight < 1 || failed+inFlight != n || ended["handed_over"] != 0.0 {
		t.Errorf("drain ended %v; want every one of the %d connections failed or in flight, some of each", ended, n)
	}
	// Those served here again were closed at the drain's deadline; those
	// the supervisor holds are still open.
	closed := 0
	for _, c := range clients {
		if closedNow(c.c) {
			closed++
		}
	}
	if closed != int(failed) {
		t.Errorf("%d client connections closed, want %d (the failed hands)", closed, int(failed))
	}
	for _, c := range clients {
		c.c.Close()
	}
	b.stop(t)
}

// closedNow reports whether c's peer has closed: it reads EOF at once (its
// process has exited).
func closedNow(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)
}

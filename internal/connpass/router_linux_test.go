package connpass

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testRouter is a router whose events the test can wait on.
type testRouter struct {
	*Router
	t       *testing.T
	changed chan struct{}
	ctx     context.Context
}

func newTestRouter(t *testing.T) *testRouter {
	changed := make(chan struct{}, 1)
	r := newRouter(func(pid int, err error) { t.Logf("router: worker %d: %v", pid, err) }, changed)
	t.Cleanup(func() { r.Close() })
	return &testRouter{Router: r, t: t, changed: changed, ctx: testCtx(t, 0)}
}

// testCtx ends at the test's deadline, or after d if that is sooner and d
// is not 0.
func testCtx(t *testing.T, d time.Duration) context.Context {
	dl, ok := t.Deadline()
	if !ok {
		dl = time.Now().Add(time.Minute)
	}
	dl = dl.Add(-5 * time.Second)
	if d > 0 && time.Now().Add(d).Before(dl) {
		dl = time.Now().Add(d)
	}
	ctx, cancel := context.WithDeadline(context.Background(), dl)
	t.Cleanup(cancel)
	return ctx
}

// waitFor waits until cond, checked on the router's goroutine, holds;
// it looks again after each message the router handles.
func (r *testRouter) waitFor(what string, cond func(*routing) bool) {
	r.t.Helper()
	for {
		ok := false
		if err := r.call(func(rt *routing) error { ok = cond(rt); return nil }); err != nil {
			r.t.Fatal(err)
		}
		if ok {
			return
		}
		select {
		case <-r.changed:
		case <-r.ctx.Done():
			r.t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// newTimingRouter is newTestRouter, its context ending after d, that
// counts the sends that timed out.
func newTimingRouter(t *testing.T, d time.Duration) (*testRouter, *atomic.Int64) {
	timeouts := new(atomic.Int64)
	changed := make(chan struct{}, 1)
	r := newRouter(func(pid int, err error) {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			timeouts.Add(1)
		}
	}, changed)
	t.Cleanup(func() { r.Close() })
	return &testRouter{Router: r, t: t, changed: changed, ctx: testCtx(t, d)}, timeouts
}

// addWorker adds a worker to r, in a slot of its own, and returns the
// worker's end of its pair.
func (r *testRouter) addWorker(pid int, gen uint64) *Conn {
	r.t.Helper()
	return r.addWorkerSlot(pid, gen, -pid)
}

func (r *testRouter) addWorkerSlot(pid int, gen uint64, slot int) *Conn {
	r.t.Helper()
	local, remote := pair(r.t)
	if err := r.Add(pid, gen, slot, local); err != nil {
		r.t.Fatal(err)
	}
	return remote
}

// serve makes worker pid (its end w) serve addrs, and waits for the router
// to know.
func (r *testRouter) serve(pid int, w *Conn, addrs ...string) {
	r.t.Helper()
	if err := w.Send(Msg{Kind: KindServe, Addrs: addrs, Fd: -1}); err != nil {
		r.t.Fatal(err)
	}
	r.waitFor("the serve", func(rt *routing) bool {
		x := rt.workers[pid]
		return x != nil && len(x.addrs) == len(addrs)
	})
}

// conn is one client connection: the client's side, and a copy of the
// server side's raw descriptor for a worker to hand.
func newConn(t *testing.T, l net.Listener) (client net.Conn, fd int) {
	t.Helper()
	client, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	fd, err = unix.Dup(tcpFd(t, server))
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fd)
	return client, fd
}

// hand sends the connection fd from worker w, and closes w's copy.
func hand(t *testing.T, w *Conn, id uint64, addr string, fd int) {
	t.Helper()
	if err := w.Send(Msg{Kind: KindHand, ID: id, Addr: addr, Fd: fd}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
}

// recvMsg receives w's next message before ctx's end.
func recvMsg(ctx context.Context, t *testing.T, w *Conn, what string) Msg {
	t.Helper()
	dl, _ := ctx.Deadline()
	w.SetReadDeadline(dl)
	defer w.SetReadDeadline(time.Time{})
	m, err := w.Recv()
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
	return m
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// readConn reads what the client wrote from the received connection fd,
// which it closes.
func readConn(t *testing.T, fd int, want string) {
	t.Helper()
	f := os.NewFile(uintptr(fd), "conn")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q, %v from the received connection; want %q", buf, err, want)
	}
}

// TestRouterPicks: a hand goes to a ready, not stopping worker whose Serve
// named its address, of the newest generation such, spread among equals;
// refusals go on to the next candidate, then back to the sender.
func TestRouterPicks(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	const addr = "127.0.0.1:8080"
	a := r.addWorker(1, 1) // the sender
	b := r.addWorker(2, 1)
	c := r.addWorker(3, 2)
	d := r.addWorker(4, 2)
	e := r.addWorker(5, 2) // serves another address
	f := r.addWorker(6, 3) // not ready
	g := r.addWorker(7, 3) // stopping
	for _, w := range []*Conn{a, b, c, d, e, f, g} {
		defer w.Close()
	}
	for pid, w := range map[int]*Conn{1: a, 2: b, 3: c, 4: d, 6: f, 7: g} {
		r.serve(pid, w, addr)
	}
	r.serve(5, e, "127.0.0.1:9090")
	for _, pid := range []int{1, 2, 3, 4, 5, 7} {
		r.Ready(pid)
	}
	r.Stopping(7)

	client1, fd1 := newConn(t, l)
	defer client1.Close()
	client2, fd2 := newConn(t, l)
	defer client2.Close()
	client1.Write([]byte("one,"))
	hand(t, a, 101, addr, fd1)
	hand(t, a, 102, addr, fd2)
	client1.Write([]byte("meanwhile"))
	// Generation 2's workers, one each (the least recently given first;
	// then by pid): c gets the first, d the second.
	m1 := recvMsg(r.ctx, t, c, "the first connection at c")
	m2 := recvMsg(r.ctx, t, d, "the second connection at d")
	if m1.Kind != KindConn || m1.Addr != addr || m1.Returned || m2.Kind != KindConn || m2.Returned {
		t.Fatalf("c got %+v, d got %+v", m1, m2)
	}
	if err := CheckConn(m1.Fd); err != nil {
		t.Fatal(err)
	}
	if s := r.Stats(); s.InFlight != 2 {
		t.Errorf("in flight before the acks: %+v", s)
	}
	c.Send(Msg{Kind: KindAck, ID: m1.ID, OK: true, Fd: -1})
	if m := recvMsg(r.ctx, t, a, "done of the first"); m.Kind != KindDone || m.ID != 101 {
		t.Fatalf("a got %+v, want done of 101", m)
	}
	readConn(t, m1.Fd, "one,meanwhile")
	// d refuses the second: c (generation 2, not tried) gets it, refuses
	// it, then b (generation 1), which refuses too: back to a.
	unix.Close(m2.Fd)
	d.Send(Msg{Kind: KindAck, ID: m2.ID, Fd: -1})
	m := recvMsg(r.ctx, t, c, "the second connection at c")
	unix.Close(m.Fd)
	c.Send(Msg{Kind: KindAck, ID: m.ID, Fd: -1})
	m = recvMsg(r.ctx, t, b, "the second connection at b")
	unix.Close(m.Fd)
	b.Send(Msg{Kind: KindAck, ID: m.ID, Fd: -1})
	m = recvMsg(r.ctx, t, a, "the second connection back")
	if m.Kind != KindConn || !m.Returned || m.ID != 102 || m.Addr != addr {
		t.Fatalf("a got %+v, want its connection 102 returned", m)
	}
	unix.Close(m.Fd)
	r.waitFor("the counts", func(*routing) bool { return r.Stats().InFlight == 0 })
	if s := r.Stats(); s != (RouterStats{Handed: 1, Returned: 1, Refused: 3}) {
		t.Errorf("stats %+v", s)
	}
	// An address nobody serves: straight back.
	client3, fd3 := newConn(t, l)
	defer client3.Close()
	hand(t, a, 103, "nowhere:1", fd3)
	if m := recvMsg(r.ctx, t, a, "the third connection back"); !m.Returned || m.ID != 103 {
		t.Fatalf("a got %+v", m)
	} else {
		unix.Close(m.Fd)
	}
	// Nothing else reached anyone.
	for name, w := range map[string]*Conn{"b": b, "c": c, "d": d, "e": e, "f": f, "g": g} {
		if n, _ := w.queued(); n != 0 {
			t.Errorf("%s has %d bytes of messages queued", name, n)
		}
	}
}

// TestRouterReadsPastReset: a worker that hands a connection and dies
// with a connection sent to it unread still has its hand routed (the
// kernel reports ECONNRESET ahead of its queued messages), and the
// connection it never took goes on to another worker.
func TestRouterReadsPastReset(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	r.ctx = testCtx(t, 10*time.Second)
	const addr = "x:1"
	w0 := r.addWorker(1, 1)
	defer w0.Close()
	w1 := r.addWorker(2, 2)
	r.serve(2, w1, addr)
	r.Ready(2)
	w2 := r.addWorker(3, 1) // older: w1 is preferred while it lives
	defer w2.Close()
	r.serve(3, w2, addr)
	r.Ready(3)
	client0, fd0 := newConn(t, l)
	defer client0.Close()
	hand(t, w0, 1, addr, fd0)
	r.waitFor("the conn sent to w1", func(rt *routing) bool { return len(rt.workers[2].sent) == 1 })
	client1, fd1 := newConn(t, l)
	defer client1.Close()
	hand(t, w1, 7, addr, fd1)
	w1.Close() // dies, the conn sent to it unread
	got := map[string]bool{}
	for range 2 {
		m := recvMsg(r.ctx, t, w2, "a connection at w2")
		sa, err := unix.Getpeername(m.Fd)
		if err != nil {
			t.Fatal(err)
		}
		got[strconv.Itoa(sa.(*unix.SockaddrInet4).Port)] = true
		unix.Close(m.Fd)
		w2.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
	}
	for _, c := range []net.Conn{client0, client1} {
		if p := strconv.Itoa(c.LocalAddr().(*net.TCPAddr).Port); !got[p] {
			t.Errorf("client port %s: its connection never reached w2 (got %v)", p, got)
		}
	}
	if m := recvMsg(r.ctx, t, w0, "done"); m.Kind != KindDone || m.ID != 1 {
		t.Errorf("w0 got %+v", m)
	}
	r.Remove(2)
}

// TestRouterRemoveReadsQueue: Remove of a worker whose end still holds a
// hand (sent just before it exited) routes it; the router's end is closed.
func TestRouterRemoveReadsQueue(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	a := r.addWorker(1, 1)
	b := r.addWorker(2, 2)
	defer b.Close()
	r.serve(2, b, "x")
	r.Ready(2)
	r.Pause() // so that the hand stays queued until Remove
	client, fd := newConn(t, l)
	defer client.Close()
	hand(t, a, 5, "x", fd)
	r.Remove(1) // before a's end is closed: a grandchild may hold it
	a.Close()
	r.Resume()
	m := recvMsg(r.ctx, t, b, "the connection")
	unix.Close(m.Fd)
	b.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
	r.waitFor("the ack", func(*routing) bool { return r.Stats().Handed == 1 })
}

// TestRouterExited: Exited does not wait, and its work is done before any
// call made after it: a hand the exited worker sent just before is routed,
// and a new worker given the same pid right after is added (not "added
// twice"), a few times over as the router's goroutine may take the calls
// in either order.
func TestRouterExited(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	b := r.addWorker(2, 2)
	defer b.Close()
	r.serve(2, b, "x")
	r.Ready(2)
	a := r.addWorker(1, 1)
	for i := range 10 {
		client, fd := newConn(t, l)
		hand(t, a, uint64(i), "x", fd)
		r.Exited(1)
		a.Close()
		a = r.addWorker(1, 1) // the same pid again
		m := recvMsg(r.ctx, t, b, "the connection")
		unix.Close(m.Fd)
		b.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
		r.waitFor("the ack", func(*routing) bool { return r.Stats().Handed == uint64(i+1) })
		client.Close()
	}
	a.Close()
	r.Remove(1)
}

// TestRouterStateRestore: a paused router's state, through JSON and the
// descriptors kept open (an exec), is restored in a new router: the
// connection in flight is acknowledged there, and hands go on.
func TestRouterStateRestore(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	a := r.addWorker(1, 1)
	defer a.Close()
	b := r.addWorker(2, 2)
	defer b.Close()
	r.serve(2, b, "x")
	r.Ready(2)
	r.Stopping(1)
	client, fd := newConn(t, l)
	defer client.Close()
	hand(t, a, 9, "x", fd)
	m := recvMsg(r.ctx, t, b, "the connection")
	if err := r.Pause(); err != nil {
		t.Fatal(err)
	}
	st, err := r.State()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Workers) != 2 || len(st.Flights) != 1 || st.Flights[0].To != 2 || !st.Workers[0].Stopping {
		t.Fatalf("state %+v", st)
	}
	b.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1}) // read by the next router
	unix.Close(m.Fd)
	// The exec: the same open files, under numbers that outlive this router.
	js, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var st2 RouterState
	if err := json.Unmarshal(js, &st2); err != nil {
		t.Fatal(err)
	}
	for i := range st2.Workers {
		st2.Workers[i].Fd, _ = unix.Dup(st2.Workers[i].Fd)
	}
	for i := range st2.Flights {
		st2.Flights[i].Fd, _ = unix.Dup(st2.Flights[i].Fd)
	}
	r.Close()
	r2 := newTestRouter(t)
	if err := r2.Restore(&st2); err != nil {
		t.Fatal(err)
	}
	if m := recvMsg(r2.ctx, t, a, "done after the restore"); m.Kind != KindDone || m.ID != 9 {
		t.Fatalf("a got %+v", m)
	}
	if s := r2.Stats(); s.Handed != 1 || s.InFlight != 0 {
		t.Errorf("stats after the restore: %+v", s)
	}
	client2, fd2 := newConn(t, l)
	defer client2.Close()
	hand(t, a, 10, "x", fd2)
	m = recvMsg(r2.ctx, t, b, "a connection after the restore")
	unix.Close(m.Fd)
	b.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
	if m := recvMsg(r2.ctx, t, a, "the second done"); m.Kind != KindDone || m.ID != 10 {
		t.Fatalf("a got %+v", m)
	}
}

// TestRouterModel drives a router with random operations (workers added,
// made ready, stopped, killed, removed; serves; hands; acks OK or not) and
// checks after each that, once quiet, every connection handed is with
// exactly one worker or closed, every hand ended (Done, Returned, or its
// sender gone), nothing is in flight; at the end the descriptors are back
// to where they were. HANDOFF_TEST_SEED replays a run.
func TestRouterModel(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("HANDOFF_TEST_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	t.Logf("seed %d (HANDOFF_TEST_SEED replays it)", seed)
	for i := range 4 {
		t.Run(strconv.Itoa(i), func(t *testing.T) { runModel(t, seed+uint64(i), 150) })
	}
}

type modelWorker struct {
	pid      int
	c        *Conn
	alive    bool
	removed  bool
	held     map[int]*modelHand // descriptors it serves, by fd
	refuseP  float64
	handsOut map[uint64]*modelHand // its hands not ended
}

type modelHand struct {
	id     uint64
	from   *modelWorker
	client net.Conn
	ended  string // "done", "returned", "sender gone"
	holder *modelWorker
}

func runModel(t *testing.T, seed uint64, ops int) {
	checkFds(t)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	l := listen(t)
	r := newTestRouter(t)
	addrs := []string{"a1", "a2", "a3"}
	var workers []*modelWorker
	var hands []*modelHand
	gen, nextPid, nextID := uint64(1), 100, uint64(0)
	defer func() {
		for _, h := range hands {
			h.client.Close()
		}
	}()
	kill := func(w *modelWorker) {
		w.alive = false
		w.c.Close()
		for fd, h := range w.held {
			unix.Close(fd)
			h.holder = nil
		}
		clear(w.held)
		for _, h := range w.handsOut {
			h.ended = "sender gone"
		}
		clear(w.handsOut)
	}
	alive := func() []*modelWorker {
		var ws []*modelWorker
		for _, w := range workers {
			if w.alive {
				ws = append(ws, w)
			}
		}
		return ws
	}
	// pump reads what the workers were sent and answers it, until the
	// router has read every hand, nothing is in flight and every hand of
	// a live sender has ended.
	pump := func() {
		t.Helper()
		for {
			for _, w := range alive() {
				for {
					n, err := w.c.queued()
					if err != nil {
						t.Fatal(err)
					}
					if n == 0 {
						break
					}
					m, err := w.c.Recv()
					if err != nil {
						t.Fatalf("worker %d: %v", w.pid, err)
					}
					switch {
					case m.Kind == KindDone:
						h := w.handsOut[m.ID]
						if h == nil {
							t.Fatalf("worker %d: done of %d, not one of its hands", w.pid, m.ID)
						}
						h.ended = "done"
						delete(w.handsOut, m.ID)
					case m.Kind == KindConn && m.Returned:
						h := w.handsOut[m.ID]
						if h == nil {
							t.Fatalf("worker %d: returned %d, not one of its hands", w.pid, m.ID)
						}
						h.ended, h.holder = "returned", w
						w.held[m.Fd] = h
						delete(w.handsOut, m.ID)
					case m.Kind == KindConn:
						h := handOf(t, hands, m.Fd)
						if h.holder != nil {
							t.Fatalf("worker %d got the connection of hand %d, held by worker %d", w.pid, h.id, h.holder.pid)
						}
						ok := rng.Float64() >= w.refuseP
						if ok {
							h.holder = w
							w.held[m.Fd] = h
						} else {
							unix.Close(m.Fd)
						}
						if err := w.c.Send(Msg{Kind: KindAck, ID: m.ID, OK: ok, Fd: -1}); err != nil {
							t.Fatal(err)
						}
					default:
						t.Fatalf("worker %d got %+v", w.pid, m)
					}
				}
			}
			quiet := r.hands.Load() == nextID && r.Stats().InFlight == 0
			for _, h := range hands {
				quiet = quiet && h.ended != ""
			}
			if quiet {
				return
			}
			select {
			case <-r.changed:
			case <-r.ctx.Done():
				t.Fatalf("seed %d: never quiet: %d of %d hands read, %+v", seed, r.hands.Load(), nextID, r.Stats())
			}
		}
	}
	check := func(op string) {
		t.Helper()
		pump()
		holders := map[*modelHand]int{}
		for _, w := range alive() {
			for fd, h := range w.held {
				if handOf(t, hands, fd) != h || h.holder != w {
					t.Fatalf("seed %d, after %s: worker %d's fd %d is not hand %d's connection", seed, op, w.pid, fd, h.id)
				}
				holders[h]++
			}
		}
		for _, h := range hands {
			switch n := holders[h]; {
			case n > 1:
				t.Fatalf("seed %d, after %s: hand %d's connection is with %d workers", seed, op, h.id, n)
			case n == 0 && !closedNow(h.client):
				t.Fatalf("seed %d, after %s: hand %d (%s) is with no worker and not closed", seed, op, h.id, h.ended)
			}
		}
	}
	for i := range ops {
		ws := alive()
		var w *modelWorker
		if len(ws) > 0 {
			w = ws[rng.IntN(len(ws))]
		}
		var op string
		switch k := rng.IntN(100); {
		case k < 15 || w == nil:
			if rng.IntN(3) == 0 {
				gen++
			}
			nextPid++
			nw := &modelWorker{pid: nextPid, alive: true, held: map[int]*modelHand{}, handsOut: map[uint64]*modelHand{},
				refuseP: []float64{0, 0.2, 1}[rng.IntN(3)]}
			nw.c = r.addWorker(nw.pid, gen)
			var serve []string
			for _, a := range addrs[:2] {
				if rng.IntN(4) > 0 {
					serve = append(serve, a)
				}
			}
			nw.c.Send(Msg{Kind: KindServe, Addrs: serve, Fd: -1})
			workers = append(workers, nw)
			op = fmt.Sprintf("add %d gen %d serving %v", nw.pid, gen, serve)
		case k < 30:
			r.Ready(w.pid)
			op = fmt.Sprintf("ready %d", w.pid)
		case k < 37:
			r.Stopping(w.pid)
			w.c.Send(Msg{Kind: KindServe, Fd: -1})
			op = fmt.Sprintf("stopping %d", w.pid)
		case k < 75:
			n := 1 + rng.IntN(3)
			for range n {
				nextID++
				client, fd := newConn(t, l)
				h := &modelHand{id: nextID, from: w, client: client}
				hands = append(hands, h)
				w.handsOut[h.id] = h
				hand(t, w.c, h.id, addrs[rng.IntN(len(addrs)*3/2)%len(addrs)], fd)
			}
			op = fmt.Sprintf("%d hands from %d", n, w.pid)
			// A death in the middle of it: the sender's, or another's
			// (maybe with connections sent to it unread).
			switch rng.IntN(4) {
			case 0:
				kill(w)
				op += ", which dies"
			case 1:
				if x := ws[rng.IntN(len(ws))]; x != w {
					kill(x)
					op += fmt.Sprintf(", %d dies", x.pid)
				}
			case 2:
				// Once the router has read the hands: a worker it sent one
				// to dies without reading it.
				r.waitFor("the hands read", func(*routing) bool { return r.hands.Load() == nextID })
				var to int
				r.call(func(rt *routing) error {
					for _, x := range rt.workers {
						if len(x.sent) > 0 {
							to = x.pid
						}
					}
					return nil
				})
				for _, x := range ws {
					if x.pid == to {
						kill(x)
						op += fmt.Sprintf(", %d dies with a connection sent to it", x.pid)
					}
				}
			}
		case k < 88:
			kill(w)
			op = fmt.Sprintf("kill %d", w.pid)
		default:
			for _, x := range workers {
				if !x.alive && !x.removed {
					r.Remove(x.pid)
					x.removed = true
				}
			}
			op = "remove the dead"
		}
		check(fmt.Sprintf("op %d (%s)", i, op))
	}
	for _, w := range alive() {
		kill(w)
	}
	for _, w := range workers {
		if !w.removed {
			r.Remove(w.pid)
		}
	}
	if s := r.Stats(); s.InFlight != 0 {
		t.Errorf("in flight at the end: %+v", s)
	}
	for _, h := range hands {
		if !closedNow(h.client) {
			t.Errorf("hand %d's client not closed after every worker died", h.id)
		}
	}
	r.Close()
	t.Logf("%d hands, %+v", len(hands), r.Stats())
}

// handOf returns the hand whose connection fd is (by the client's port).
func handOf(t *testing.T, hands []*modelHand, fd int) *modelHand {
	t.Helper()
	sa, err := unix.Getpeername(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := sa.(*unix.SockaddrInet4).Port
	for _, h := range hands {
		if h.client.LocalAddr().(*net.TCPAddr).Port == port {
			return h
		}
	}
	t.Fatalf("fd %d: no hand of peer port %d", fd, port)
	return nil
}

// closedNow reports whether c's peer has closed: it reads EOF within a
// second (the FIN of a closed loopback connection is there at once).
func closedNow(c net.Conn) bool {
	c.SetReadDeadline(time.Now().Add(time.Second))
	_, err := c.Read(make([]byte, 1))
	return errors.Is(err, io.EOF) || errors.Is(err, unix.ECONNRESET)
}

// TestRouterManySenders: several workers hand connections as fast as they
// can to one that takes each and acknowledges it. The router's goroutine
// sends while it routes; it must never wait on itself: a router whose
// readers wait for it while it waits, in a send, for a worker whose
// acknowledgements those readers do not read, stalls every hand by the
// send timeout (seen in a loaded e2e run: clients timed out after 20 s,
// and the supervisor's loop hung in Remove).
func TestRouterManySenders(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r, timeouts := newTimingRouter(t, 30*time.Second)
	const addr, senders, hands = "x:1", 4, 1500
	taker := r.addWorker(100, 2)
	defer taker.Close()
	r.serve(100, taker, addr)
	r.Ready(100)
	client, fd := newConn(t, l)
	defer client.Close()
	defer unix.Close(fd)

	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { // the taker: each connection taken and acknowledged
		dl, _ := r.ctx.Deadline()
		taker.SetWriteDeadline(dl)
		for range senders * hands {
			m, err := recvCtx(r.ctx, taker)
			if err != nil {
				t.Errorf("taker: %v", err)
				return
			}
			unix.Close(m.Fd)
			if err := taker.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1}); err != nil {
				t.Errorf("taker: %v", err)
				return
			}
		}
	})
	for i := range senders {
		w := r.addWorker(1+i, 1)
		defer w.Close()
		wg.Go(func() { // hands, as fast as the pair takes them
			dl, _ := r.ctx.Deadline()
			w.SetWriteDeadline(dl)
			for id := range uint64(hands) {
				if err := w.Send(Msg{Kind: KindHand, ID: id, Addr: addr, Fd: fd}); err != nil {
					t.Errorf("sender %d: %v", i, err)
					return
				}
			}
		})
		wg.Go(func() { // and reads what it is told
			for range hands {
				m, err := recvCtx(r.ctx, w)
				if err != nil {
					t.Errorf("sender %d: %v", i, err)
					return
				}
				if m.Kind != KindDone {
					t.Errorf("sender %d got %+v, want a done", i, m)
					unix.Close(m.Fd)
				}
			}
		})
	}
	wg.Wait()
	if s := r.Stats(); s.Handed != senders*hands || s.InFlight != 0 || timeouts.Load() != 0 {
		t.Errorf("%+v, %d sends timed out; want %d handed, none timed out", s, timeouts.Load(), senders*hands)
	}
}

// recvCtx receives w's next message before ctx's end.
func recvCtx(ctx context.Context, w *Conn) (Msg, error) {
	dl, _ := ctx.Deadline()
	w.SetReadDeadline(dl)
	return w.Recv()
}

// TestRouterSkipsStalled: a worker that stops reading its end is waited
// for once (SendTimeout), not on every hand: the hands go to the other
// worker meanwhile, and to it again once it reads and acknowledges.
func TestRouterSkipsStalled(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r, timeouts := newTimingRouter(t, time.Minute)
	const addr = "x:1"
	sender := r.addWorker(1, 1)
	defer sender.Close()
	stuck := r.addWorker(2, 2) // reads nothing until the end
	defer stuck.Close()
	taker := r.addWorker(3, 2)
	defer taker.Close()
	for pid, w := range map[int]*Conn{2: stuck, 3: taker} {
		r.serve(pid, w, addr)
		r.Ready(pid)
	}
	client, fd := newConn(t, l)
	defer client.Close()
	defer unix.Close(fd)

	// Hands until the stuck worker's end is full and a send to it timed
	// out; the taker acknowledges what it gets.
	var takerGot atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			m, err := recvCtx(r.ctx, taker)
			if err != nil {
				return // closed at the end
			}
			unix.Close(m.Fd)
			takerGot.Add(1)
			taker.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
		}
	})
	wg.Go(func() { // the sender reads its dones
		for {
			m, err := recvCtx(r.ctx, sender)
			if err != nil {
				return // closed at the end
			}
			unix.Close(m.Fd)
		}
	})
	sent := 0
	for timeouts.Load() == 0 {
		if r.ctx.Err() != nil {
			t.Fatalf("no send timed out after %d hands", sent)
		}
		sent++
		hand(t, sender, uint64(sent), addr, mustDup(t, fd))
		r.waitFor("the hand routed", func(*routing) bool { return r.hands.Load() == uint64(sent) })
	}
	// Stalled: the next hands all go to the taker, with no wait.
	before := takerGot.Load()
	for range 50 {
		sent++
		hand(t, sender, uint64(sent), addr, mustDup(t, fd))
	}
	r.waitFor(fmt.Sprintf("50 more taken (%d before)", before), func(*routing) bool { return takerGot.Load() >= before+50 })
	t.Logf("sent %d, taker got %d (%d before), %d timeouts, stats %+v", sent, takerGot.Load(), before, timeouts.Load(), r.Stats())
	if n := timeouts.Load(); n != 1 {
		t.Errorf("%d sends timed out, want 1: the stalled worker was waited for again", n)
	}
	// It reads again: what it holds is acknowledged, and it is given
	// connections again.
	held := 0
	for {
		if n, _ := stuck.queued(); n == 0 {
			break
		}
		m := recvMsg(r.ctx, t, stuck, "what the stalled worker holds")
		unix.Close(m.Fd)
		stuck.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
		held++
	}
	r.waitFor("its acknowledgements", func(rt *routing) bool { return !rt.workers[2].stalled })
	sent++
	hand(t, sender, uint64(sent), addr, mustDup(t, fd))
	m := recvMsg(r.ctx, t, stuck, "a connection after the stall")
	unix.Close(m.Fd)
	stuck.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
	r.waitFor("every hand done", func(*routing) bool { return r.Stats().Handed == uint64(sent) })
	taker.Close()
	sender.Close()
	wg.Wait()
	t.Logf("%d hands; the stalled worker held %d", sent, held)
}

func mustDup(t *testing.T, fd int) int {
	t.Helper()
	d, err := unix.Dup(fd)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestRouterPrefersSlot: in a roll, the connections a retired worker hands
// go to its slot's replacement, not spread over the new generation: the
// slots keep their share of the connections through the roll. Without a
// worker of its slot in the newest generation, a connection goes to the
// least recently given one of that generation.
func TestRouterPrefersSlot(t *testing.T) {
	checkFds(t)
	l := listen(t)
	r := newTestRouter(t)
	const addr = "x:1"
	old0 := r.addWorkerSlot(1, 1, 0)
	defer old0.Close()
	old1 := r.addWorkerSlot(2, 1, 1)
	defer old1.Close()
	new0 := r.addWorkerSlot(3, 2, 0)
	defer new0.Close()
	new1 := r.addWorkerSlot(4, 2, 1)
	defer new1.Close()
	gone := r.addWorkerSlot(5, 1, 2) // a slot scaled away: no replacement
	defer gone.Close()
	for pid, w := range map[int]*Conn{1: old0, 2: old1, 3: new0, 4: new1, 5: gone} {
		r.serve(pid, w, addr)
		r.Ready(pid)
	}
	r.Stopping(1)
	r.Stopping(2)
	r.Stopping(5)
	take := func(w *Conn, what string) {
		t.Helper()
		m := recvMsg(r.ctx, t, w, what)
		if m.Kind != KindConn || m.Returned {
			t.Fatalf("%s: got %+v", what, m)
		}
		unix.Close(m.Fd)
		w.Send(Msg{Kind: KindAck, ID: m.ID, OK: true, Fd: -1})
	}
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	handN := func(from *Conn, n int) {
		for i := range n {
			c, fd := newConn(t, l)
			clients = append(clients, c)
			hand(t, from, uint64(i+1), addr, fd)
		}
	}
	handN(old1, 3)
	for i := range 3 {
		take(new1, fmt.Sprintf("old1's connection %d at new1", i))
	}
	handN(old0, 3)
	for i := range 3 {
		take(new0, fmt.Sprintf("old0's connection %d at new0", i))
	}
	handN(gone, 2) // new0 was given one last: new1 first, then new0
	take(new1, "the first of slot 2's at new1")
	take(new0, "the second of slot 2's at new0")
	r.waitFor("every hand done", func(*routing) bool { return r.Stats().Handed == 8 })
	for name, w := range map[string]*Conn{"new0": new0, "new1": new1} {
		if n, _ := w.queued(); n != 0 {
			t.Errorf("%s has %d bytes of messages queued", name, n)
		}
	}
	for _, w := range []*Conn{old0, old1, gone} { // their dones
		for {
			if n, _ := w.queued(); n == 0 {
				break
			}
			recvMsg(r.ctx, t, w, "a done")
		}
	}
}

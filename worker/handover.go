package worker

import (
	"errors"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/handoff-dev/handoff/internal/connpass"
)

// The hand-over side of the drain (see ServeAndDrain, "# Hand-over"):
// the listeners that take connections handed to this process, the drain
// start that asks every connection to be handed at its next idle point,
// the hands (handConn.Close calls handOff), and what comes back: Done, or
// the connection itself, served here again the drain's old way.

// drainHand is the hand-over of one ServeAndDrain call.
type drainHand struct {
	d      *drainer
	client *handClient
	ls     []*handListener

	inFlight atomic.Int64 // hands sent (or being sent), neither done nor returned
	handed   atomic.Int64 // hands done: served elsewhere
	returned atomic.Int64 // hands given back, served here again
	failed   atomic.Int64 // hands that could not be sent, served here again
}

// newDrainHand returns d's hand-over, or nil if it is off: no socket pair
// (or one that cannot be used, which is logged).
func newDrainHand(d *drainer) *drainHand {
	client, err := d.opts.handClient()
	if err != nil && d.opts.logger != nil {
		d.opts.logger.Warn("worker: hand-over off", slog.Int("pid", os.Getpid()), slog.Any("error", err))
	}
	if client == nil || client.isBroken() {
		return nil
	}
	h := &drainHand{d: d, client: client}
	client.acquire(h, d.opts.logger)
	return h
}

// listen returns ls wrapped to take connections handed to this process,
// and tells the supervisor their addresses.
func (h *drainHand) listen(ls []net.Listener) []net.Listener {
	out := make([]net.Listener, len(ls))
	addrs := make([]string, 0, len(ls))
	for i, l := range ls {
		hl := newHandListener(l, h)
		h.ls = append(h.ls, hl)
		out[i] = hl
		if len(addrs) < connpass.MaxAddrs {
			addrs = append(addrs, hl.addr)
		}
		h.client.setTaker(hl.addr, hl)
	}
	h.serve(addrs)
	return out
}

// serve tells the supervisor which addresses this process takes
// connections for (none once it drains).
func (h *drainHand) serve(addrs []string) {
	if err := h.client.send(connpass.Msg{Kind: connpass.KindServe, Addrs: addrs, Fd: -1}, handSendTimeout); err != nil && h.d.opts.logger != nil {
		h.d.opts.logger.Warn("worker: hand-over: telling the supervisor", slog.Int("pid", os.Getpid()), slog.Any("error", err))
	}
}

// stopTaking stops taking connections, and tells the supervisor. d.mu
// must not be held: a send that finds the pair broken tells the drain
// (handBroken).
func (h *drainHand) stopTaking() {
	for _, l := range h.ls {
		h.client.unsetTaker(l.addr, l)
	}
	h.serve(nil)
}

// start asks every connection to be handed at its next idle point; it
// returns how many are idle now. d.mu is held.
func (h *drainHand) start() (idle int) {
	for c := range h.d.conns {
		if hc, ok := c.(*handConn); ok && hc.handAtIdle() {
			idle++
		}
	}
	return idle
}

// leftovers serves the connections taken but not accepted before the
// listeners closed, as if accepted: they are handed on in turn.
func (h *drainHand) leftovers() {
	for _, l := range h.ls {
		for _, c := range l.stop() {
			h.d.serveAgain(c)
		}
	}
}

// working reports whether hands can still be sent.
func (h *drainHand) working() bool { return h != nil && !h.client.isBroken() }

// handOff hands c over; if that fails, c is served here again, with
// "Connection: close" on its next response. It returns once c is no
// longer its to close.
func (h *drainHand) handOff(c *handConn) error {
	h.inFlight.Add(1)
	err := h.send(c)
	if err != nil {
		h.d.serveAgain(newHandConn(c.Conn, c.addr, nil))
		h.failed.Add(1)
		h.inFlight.Add(-1)
		h.d.ring()
		if h.d.opts.logger != nil && !errors.Is(err, errPairBroken) {
			h.d.opts.logger.Warn("worker: hand-over failed; serving the connection here", slog.Int("pid", os.Getpid()), slog.Any("error", err))
		}
		return nil
	}
	return c.Conn.Close()
}

// send sends c's descriptor, got without making the socket blocking
// (never os.File.Fd: the mode is the open file description's, shared with
// the process that takes it over).
func (h *drainHand) send(c *handConn) error {
	rc, err := c.Conn.(syscall.Conn).SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { _, serr = h.client.hand(c.addr, int(fd), h) }); err != nil {
		return err
	}
	return serr
}

func (h *drainHand) handDone(uint64) {
	h.handed.Add(1)
	h.inFlight.Add(-1)
	h.d.ring()
}

func (h *drainHand) handReturned(_ uint64, c net.Conn) {
	h.d.serveAgain(newHandConn(c, "", nil))
	h.returned.Add(1)
	h.inFlight.Add(-1)
	h.d.ring()
}

// handBroken: the pair broke; connections stay here, served the drain's
// old way.
func (h *drainHand) handBroken() {
	h.d.mu.Lock()
	for c := range h.d.conns {
		if hc, ok := c.(*handConn); ok {
			hc.keep()
		}
	}
	h.d.mu.Unlock()
	h.d.ring()
}

// end releases the client, after which nothing more comes for this drain.
func (h *drainHand) end() {
	h.client.release(h)
	for _, l := range h.ls {
		h.client.unsetTaker(l.addr, l)
		for _, c := range l.stop() {
			c.Close() // none: leftovers took them; a safety net
		}
	}
}

// serveAgain serves c with the server ServeAndDrain serves with, as if
// accepted, in a goroutine joined before ServeAndDrain returns. The drain
// waits for it.
func (d *drainer) serveAgain(c net.Conn) {
	d.again.Add(1)
	d.againWG.Go(func() {
		defer func() {
			d.again.Add(-1)
			d.ring()
		}()
		l := newConnListener(c)
		if hc, ok := c.(*handConn); ok {
			l.done = hc.closed
		}
		d.inner.Serve(l) // returns once c is closed, or at once if the server is closed
		select {
		case <-l.accepted:
		default:
			c.Close()
		}
	})
}

// handListener is a listener that also returns the connections handed to
// this process for its address. The wrapped listener's Accept runs in a
// goroutine of its own, so that Accept can wait for both.
type handListener struct {
	net.Listener
	addr    string
	hand    *drainHand
	accepts chan acceptResult
	ready   chan struct{} // rung when a connection is queued
	closed  chan struct{}
	start   sync.Once
	close   sync.Once
	loop    sync.WaitGroup

	mu      sync.Mutex
	queue   []net.Conn
	stopped bool
}

type acceptResult struct {
	c   net.Conn
	err error
}

func newHandListener(l net.Listener, h *drainHand) *handListener {
	return &handListener{
		Listener: l, addr: l.Addr().String(), hand: h,
		accepts: make(chan acceptResult), ready: make(chan struct{}, 1), closed: make(chan struct{}),
	}
}

func (l *handListener) Accept() (net.Conn, error) {
	l.start.Do(func() { l.loop.Go(l.acceptLoop) })
	for {
		l.mu.Lock()
		if len(l.queue) > 0 {
			c := l.queue[0]
			l.queue = l.queue[1:]
			l.mu.Unlock()
			return c, nil
		}
		l.mu.Unlock()
		select {
		case r := <-l.accepts:
			if r.err != nil {
				return nil, r.err
			}
			return newHandConn(r.c, l.addr, l.hand), nil
		case <-l.ready:
		case <-l.closed:
			return nil, net.ErrClosed
		}
	}
}

// acceptLoop accepts on the wrapped listener for Accept, until it is
// closed.
func (l *handListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepts <- acceptResult{c, err}:
		case <-l.closed:
			if c != nil && !l.take(c) {
				l.hand.d.serveAgain(newHandConn(c, l.addr, l.hand))
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Close closes the wrapped listener and waits for the accepting goroutine.
func (l *handListener) Close() error {
	var err error
	l.close.Do(func() {
		close(l.closed)
		err = l.Listener.Close()
		l.loop.Wait()
	})
	return err
}

// take queues c, handed to this process, for Accept; false once the drain
// has started.
func (l *handListener) take(c net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return false
	}
	l.queue = append(l.queue, newHandConn(c, l.addr, l.hand))
	select {
	case l.ready <- struct{}{}:
	default:
	}
	return true
}

// stop makes take refuse, and returns what is queued.
func (l *handListener) stop() []net.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	q := l.queue
	l.queue = nil
	return q
}

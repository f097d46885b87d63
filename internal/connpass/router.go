package connpass

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Router is the supervisor's side of hand-over: it reads every worker's
// end of its pair, and passes each connection a worker hands over to
// another worker (see doc.go and HANDOVER.md's step 4).
//
// One goroutine owns the routing state; a reader goroutine per worker
// feeds it what it receives, through an inbox that never makes a reader
// wait, and the public methods send it requests. The owner sends to the
// workers itself: a reader that waited for it could stop reading the
// acknowledgements of the very worker it is sending to, whose reading
// stops in turn once its acknowledgements fill the pair. A
// descriptor the router holds is either waiting for a worker's Ack, or
// closed: every KindConn sent that is not Returned is acknowledged before
// the router's copy is closed.
type Router struct {
	inbox   inbox
	reqs    chan func(*routing)
	done    chan struct{} // closed when the owner has returned
	closing chan struct{} // closed by Close
	once    sync.Once
	readers sync.WaitGroup
	stats   routerCounts

	// changed, if not nil, gets a token after every message a reader
	// delivered has been handled: tests wait on it instead of sleeping.
	// hands counts the KindHand messages received, for tests.
	changed chan struct{}
	hands   atomic.Uint64
}

// RouterStats counts what the router did with handed connections, since
// the first program of an upgrade chain started.
type RouterStats struct {
	// Handed: taken by another worker (acknowledged OK). Returned: given
	// back to the worker that handed them, as no other could take them.
	// Refused: acknowledgements not OK (the router then tries another
	// worker). Failed: closed without reaching a worker (none could take
	// it and its sender was gone). InFlight: held now, sent to a worker
	// that has not acknowledged yet.
	Handed, Returned, Refused, Failed, InFlight uint64
}

type routerCounts struct{ handed, returned, refused, failed, inFlight atomic.Uint64 }

// RouterState is what a router hands the next program of a supervisor's
// upgrade in place: its workers, their pair ends and the descriptors in
// flight, as descriptor numbers that stay open across the exec (Fds lists
// them). It is JSON.
type RouterState struct {
	Workers []RouterWorker
	Flights []RouterFlight
	NextID  uint64
	// Counts, so that the next program's Stats go on from them.
	Handed, Returned, Refused, Failed uint64
}

// RouterWorker is a worker as the router knows it.
type RouterWorker struct {
	Pid        int
	Generation uint64
	Slot       int
	Fd         int      // its pair's end, this process's
	Addrs      []string `json:",omitempty"` // its last Serve
	Ready      bool     `json:",omitempty"`
	Stopping   bool     `json:",omitempty"`
	Gone       bool     `json:",omitempty"` // its end read EOF; not removed yet
}

// RouterFlight is a handed connection sent to a worker that has not
// acknowledged it yet.
type RouterFlight struct {
	ID     uint64 // the router's, in the KindConn
	Fd     int    // the router's copy
	Addr   string
	From   int    // the sender's pid
	FromID uint64 // the sender's ID, of its KindHand
	To     int    // the pid it was sent to
	Tried  []int  // pids that cannot take it (the sender among them)
}

// Fds are the descriptors st names, which must stay open across the exec.
func (st *RouterState) Fds() []int {
	var fds []int
	for _, w := range st.Workers {
		fds = append(fds, w.Fd)
	}
	for _, f := range st.Flights {
		fds = append(fds, f.Fd)
	}
	return fds
}

// ErrRouterClosed is returned by the methods of a closed router.
var ErrRouterClosed = errors.New("connpass: router closed")

// SendTimeout bounds a message to a worker whose queue is full: a worker
// that does not read its pair for that long is not waited for, and is
// given no connection until it sends something again (it is stalled).
const SendTimeout = time.Second

// NewRouter returns a running router. onError, unless nil, is told of
// what the router cannot do (a worker's protocol error, a failed send);
// it is called on the router's goroutine and must not call the router.
func NewRouter(onError func(pid int, err error)) *Router { return newRouter(onError, nil) }

func newRouter(onError func(pid int, err error), changed chan struct{}) *Router {
	r := &Router{
		inbox:   inbox{ready: make(chan struct{}, 1)},
		reqs:    make(chan func(*routing)),
		done:    make(chan struct{}),
		closing: make(chan struct{}),
		changed: changed,
	}
	if onError == nil {
		onError = func(int, error) {}
	}
	rt := &routing{r: r, workers: make(map[int]*rworker), flights: make(map[uint64]*flight), nextID: 1, onError: onError}
	go rt.run()
	return r
}

// Add registers c, the router's end of the pair of worker pid of
// generation gen, in the supervisor's slot slot, and starts reading it.
// The router owns c from then on (closed on error too). A connection a
// worker hands goes to the newest generation, and there first to the
// worker of the sender's slot: its replacement, so that a roll leaves
// each slot the connections it had.
func (r *Router) Add(pid int, gen uint64, slot int, c *Conn) error {
	err := r.call(func(rt *routing) error { return rt.add(pid, gen, slot, c) })
	if errors.Is(err, ErrRouterClosed) {
		c.Close()
	}
	return err
}

// Ready marks worker pid ready: it may be given connections (once its
// Serve names their address).
func (r *Router) Ready(pid int) {
	r.call(func(rt *routing) error { rt.set(pid, func(w *rworker) { w.ready = true }); return nil })
}

// Stopping marks worker pid retired: it is given no more connections.
func (r *Router) Stopping(pid int) {
	r.call(func(rt *routing) error { rt.set(pid, func(w *rworker) { w.stopping = true }); return nil })
}

// Remove forgets worker pid, which exited: it reads what the worker sent
// and the router has not read yet, closes the router's end, and gives the
// connections sent to it and not acknowledged to another worker (or back
// to their senders). It returns when that is done.
func (r *Router) Remove(pid int) {
	wait := make(chan struct{})
	if r.call(func(rt *routing) error { rt.remove(pid, wait); return nil }) != nil {
		return
	}
	select {
	case <-wait:
	case <-r.done:
	}
}

// Exited is Remove without the wait, for the exit of a worker: it never
// waits for the router's goroutine, which does the same work later, in
// order with the calls made after it (Add of a new worker that was given
// the same pid comes after). A supervisor stopping a thousand workers
// waited its turn on each exit otherwise.
func (r *Router) Exited(pid int) { r.inbox.put(event{exited: pid, m: Msg{Fd: -1}}) }

// Stats returns the router's counts without waiting for its goroutine.
func (r *Router) Stats() RouterStats {
	return RouterStats{Handed: r.stats.handed.Load(), Returned: r.stats.returned.Load(),
		Refused: r.stats.refused.Load(), Failed: r.stats.failed.Load(), InFlight: r.stats.inFlight.Load()}
}

// Pause stops reading the workers' ends, leaving what is unread in the
// kernel, and returns once what was read has been handled: State is then
// complete. Resume reads on (an upgrade's exec failed).
func (r *Router) Pause() error {
	wait := make(chan struct{})
	if err := r.call(func(rt *routing) error { rt.pause(wait); return nil }); err != nil {
		return err
	}
	select {
	case <-wait:
		return nil
	case <-r.done:
		return ErrRouterClosed
	}
}

// Resume reads the workers' ends again after Pause.
func (r *Router) Resume() error { return r.call(func(rt *routing) error { return rt.resume() }) }

// State returns the routing state of a paused router, for the next
// program; its descriptors stay the router's (and open) until Close.
func (r *Router) State() (*RouterState, error) {
	var st *RouterState
	err := r.call(func(rt *routing) error {
		if !rt.paused {
			return errors.New("connpass: State of a router not paused")
		}
		st = rt.state()
		return nil
	})
	return st, err
}

// Restore takes over st, a state an earlier program's router handed on,
// into r, which must be new: it owns st's descriptors from then on and
// reads the workers' ends. A worker's end that is no longer a pair end is
// dropped (and its flights returned or closed), and the error says so.
func (r *Router) Restore(st *RouterState) error {
	return r.call(func(rt *routing) error { return rt.restore(st) })
}

// Close stops the router: it closes every worker's end and every
// descriptor in flight, and returns when its goroutines have.
func (r *Router) Close() error {
	r.once.Do(func() { close(r.closing) })
	<-r.done
	return nil
}

// call runs f on the router's goroutine.
func (r *Router) call(f func(*routing) error) error {
	reply := make(chan error, 1)
	select {
	case r.reqs <- func(rt *routing) { reply <- f(rt) }:
	case <-r.done:
		return ErrRouterClosed
	}
	select {
	case err := <-reply:
		return err
	case <-r.done:
		return ErrRouterClosed
	}
}

// event is what a reader hands the owner: a message, or its end (stopped);
// or, with w nil, what Exited says.
type event struct {
	w       *rworker
	m       Msg
	err     error
	stopped bool
	exited  int // the pid Exited was called with
}

// inbox holds the events the readers put and the owner has not taken, in
// their order. put never waits.
type inbox struct {
	mu    sync.Mutex
	q     []event
	ready chan struct{} // holds a token while q may not be empty
}

func (b *inbox) put(e event) {
	b.mu.Lock()
	b.q = append(b.q, e)
	b.mu.Unlock()
	select {
	case b.ready <- struct{}{}:
	default:
	}
}

// take returns every event put and not yet taken.
func (b *inbox) take() []event {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.q
	b.q = nil
	return q
}

// reader modes, set before the reader is kicked (a read deadline in the
// past).
const (
	kickPause = iota + 1 // return at once, reading nothing more
	kickDrain            // read what is queued, then return
)

type rworker struct {
	pid      int
	gen      uint64
	slot     int
	c        *Conn
	addrs    map[string]bool
	ready    bool
	stopping bool
	gone     bool   // its end read EOF or failed: nothing more is sent to it
	stalled  bool   // a send to it timed out: given no connection until it sends again
	used     uint64 // when it was last given a connection (least recently used first)
	sent     map[uint64]*flight
	kick     chan int      // the reader's mode, before a kick
	stopped  chan struct{} // closed when its reader has returned
	reading  bool
	removed  bool            // Remove or Exited was called: dropped once its reader has returned
	removing []chan struct{} // Remove calls waiting
}

type flight struct {
	id     uint64
	fd     int
	addr   string
	from   int
	slot   int // the sender's
	fromID uint64
	to     int
	tried  map[int]bool
}

// routing is the state the owner goroutine owns.
type routing struct {
	r       *Router
	workers map[int]*rworker
	flights map[uint64]*flight
	nextID  uint64
	uses    uint64
	paused  bool
	pausing chan struct{} // Pause waiting for the readers to stop
	onError func(int, error)
}

func (rt *routing) run() {
	r := rt.r
	defer close(r.done)
	for {
		select {
		case <-r.inbox.ready:
			rt.takeInbox()
		case f := <-r.reqs:
			rt.takeInbox() // what was put before the call (an Exited) first
			f(rt)
		case <-r.closing:
			rt.closeAll()
			return
		}
	}
}

// takeInbox handles the events put and not yet taken.
func (rt *routing) takeInbox() {
	r := rt.r
	for _, e := range r.inbox.take() {
		rt.onEvent(e)
		if r.changed != nil {
			select {
			case r.changed <- struct{}{}:
			default:
			}
		}
	}
}

func (rt *routing) add(pid int, gen uint64, slot int, c *Conn) error {
	if old := rt.workers[pid]; old != nil && old.removed {
		// Its pid given again after Exited: its reader, kicked to drain,
		// returns without waiting for this goroutine; its last messages are
		// handled, and it is dropped.
		<-old.stopped
		rt.takeInbox()
	}
	if old := rt.workers[pid]; old != nil {
		c.Close()
		return fmt.Errorf("connpass: worker %d added twice", pid)
	}
	w := &rworker{pid: pid, gen: gen, slot: slot, c: c, addrs: map[string]bool{}, sent: map[uint64]*flight{}}
	rt.workers[pid] = w
	if !rt.paused {
		rt.startReader(w)
	}
	return nil
}

func (rt *routing) set(pid int, f func(*rworker)) {
	if w := rt.workers[pid]; w != nil {
		f(w)
	}
}

func (rt *routing) startReader(w *rworker) {
	if w.reading || w.gone {
		return
	}
	w.reading = true
	w.kick = make(chan int, 1)
	w.stopped = make(chan struct{})
	r := rt.r
	r.readers.Add(1)
	go func() {
		defer r.readers.Done()
		defer close(w.stopped)
		read(r, w)
	}()
}

// read is a worker's reader: it hands each message to the owner until EOF,
// an error, or a kick. It never waits for the owner.
func read(r *Router, w *rworker) {
	drain := false
	for {
		if drain {
			if n, err := w.c.queued(); err != nil || n == 0 {
				r.inbox.put(event{w: w, m: Msg{Fd: -1}, stopped: true})
				return
			}
		}
		m, err := w.c.Recv()
		if errors.Is(err, os.ErrDeadlineExceeded) && !drain {
			switch <-w.kick {
			case kickPause:
				r.inbox.put(event{w: w, m: Msg{Fd: -1}, stopped: true})
				return
			case kickDrain:
				drain = true
				w.c.SetReadDeadline(time.Time{})
				continue
			}
		}
		r.inbox.put(event{w: w, m: m, err: err})
		if err != nil && !isMsgError(err) {
			r.inbox.put(event{w: w, m: Msg{Fd: -1}, stopped: true})
			return
		}
	}
}

// isMsgError reports whether err, from Recv, is about one message (the
// next Recv reads the next), rather than the end of the pair.
func isMsgError(err error) bool {
	if err == io.EOF || errors.Is(err, os.ErrClosed) || errors.Is(err, os.ErrDeadlineExceeded) {
		return false
	}
	var se *os.SyscallError
	return !errors.As(err, &se)
}

func (rt *routing) onEvent(e event) {
	w := e.w
	if w == nil {
		rt.remove(e.exited, nil)
		return
	}
	if rt.workers[w.pid] != w {
		if e.m.Fd >= 0 {
			closeFd(e.m.Fd)
		}
		return
	}
	if e.stopped {
		rt.readerStopped(w)
		return
	}
	w.stalled = false // it reads its end again: its acknowledgements come
	if e.err != nil {
		if !isMsgError(e.err) {
			if e.err != io.EOF {
				rt.onError(w.pid, e.err)
			}
			rt.lose(w)
		} else {
			rt.onError(w.pid, e.err)
		}
		return
	}
	m := e.m
	switch m.Kind {
	case KindServe:
		w.addrs = make(map[string]bool, len(m.Addrs))
		for _, a := range m.Addrs {
			w.addrs[a] = true
		}
	case KindHand:
		rt.r.hands.Add(1)
		rt.nextID++
		f := &flight{id: rt.nextID, fd: m.Fd, addr: m.Addr, from: w.pid, slot: w.slot, fromID: m.ID, tried: map[int]bool{w.pid: true}}
		rt.flights[f.id] = f
		rt.r.stats.inFlight.Add(1)
		rt.route(f)
	case KindAck:
		f := w.sent[m.ID]
		if f == nil {
			rt.onError(w.pid, fmt.Errorf("connpass: ack of %d, which it was not sent", m.ID))
			return
		}
		delete(w.sent, m.ID)
		if m.OK {
			rt.finish(f)
			rt.r.stats.handed.Add(1)
			rt.tell(f.from, Msg{Kind: KindDone, ID: f.fromID, Fd: -1})
			return
		}
		rt.r.stats.refused.Add(1)
		f.tried[w.pid] = true
		rt.route(f)
	default:
		if m.Fd >= 0 {
			closeFd(m.Fd)
		}
		rt.onError(w.pid, fmt.Errorf("connpass: a worker sent a %v message", m.Kind))
	}
}

// route sends f to the best worker that can take it, or back to its
// sender, or closes it.
func (rt *routing) route(f *flight) {
	for {
		to := rt.pick(f)
		if to == nil {
			break
		}
		f.tried[to.pid] = true
		if err := rt.send(to, Msg{Kind: KindConn, ID: f.id, Addr: f.addr, Fd: f.fd}); err != nil {
			continue
		}
		rt.uses++
		to.used = rt.uses
		f.to = to.pid
		to.sent[f.id] = f
		return
	}
	if from := rt.workers[f.from]; from != nil && !from.gone {
		if rt.send(from, Msg{Kind: KindConn, ID: f.fromID, Addr: f.addr, Returned: true, Fd: f.fd}) == nil {
			rt.r.stats.returned.Add(1)
			rt.finish(f)
			return
		}
	}
	rt.r.stats.failed.Add(1)
	rt.finish(f)
}

// pick returns the worker f goes to: ready, not stopping, not stalled, not
// tried, its last Serve naming f's address; of the newest generation; of
// the sender's slot if one is; the least recently given one. Nil if there
// is none.
func (rt *routing) pick(f *flight) *rworker {
	var best *rworker
	for _, w := range rt.workers {
		if w.gone || w.removed || w.stalled || !w.ready || w.stopping || f.tried[w.pid] || !w.addrs[f.addr] {
			continue
		}
		if best == nil || better(w, best, f.slot) {
			best = w
		}
	}
	return best
}

// better reports whether w is a better pick than best for a connection
// from slot.
func better(w, best *rworker, slot int) bool {
	if w.gen != best.gen {
		return w.gen > best.gen
	}
	if ws, bs := w.slot == slot, best.slot == slot; ws != bs {
		return ws
	}
	if w.used != best.used {
		return w.used < best.used
	}
	return w.pid < best.pid
}

// finish closes f's descriptor and forgets f.
func (rt *routing) finish(f *flight) {
	closeFd(f.fd)
	delete(rt.flights, f.id)
	rt.r.stats.inFlight.Add(^uint64(0))
}

// tell sends m to worker pid if it is still there.
func (rt *routing) tell(pid int, m Msg) {
	if w := rt.workers[pid]; w != nil && !w.gone {
		rt.send(w, m)
	}
}

func (rt *routing) send(w *rworker, m Msg) error {
	w.c.SetWriteDeadline(time.Now().Add(SendTimeout))
	err := w.c.Send(m)
	if err != nil {
		rt.onError(w.pid, err)
		switch {
		case errors.Is(err, io.ErrClosedPipe):
			w.gone = true
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.stalled = true // not waited for again on every hand
		}
	}
	return err
}

// lose marks w as unable to take or acknowledge anything more, and routes
// what was sent to it again.
func (rt *routing) lose(w *rworker) {
	w.gone = true
	sent := slices.SortedFunc(func(yield func(*flight) bool) {
		for _, f := range w.sent {
			if !yield(f) {
				return
			}
		}
	}, func(a, b *flight) int { return cmp.Compare(a.id, b.id) })
	clear(w.sent)
	for _, f := range sent {
		rt.route(f)
	}
}

func (rt *routing) readerStopped(w *rworker) {
	w.reading = false
	<-w.stopped
	if w.removed {
		rt.drop(w)
		return
	}
	if rt.pausing != nil && !rt.anyReading() {
		close(rt.pausing)
		rt.pausing = nil
	}
	if !rt.paused {
		w.gone = true // it read the end of its pair
	}
}

func (rt *routing) anyReading() bool {
	for _, w := range rt.workers {
		if w.reading {
			return true
		}
	}
	return false
}

// drop forgets w: its end closed, what was sent to it routed again.
func (rt *routing) drop(w *rworker) {
	delete(rt.workers, w.pid)
	w.c.Close()
	rt.lose(w)
	for _, c := range w.removing {
		close(c)
	}
	if rt.pausing != nil && !rt.anyReading() {
		close(rt.pausing)
		rt.pausing = nil
	}
}

// remove drops worker pid once what it sent is read, and closes wait
// (unless nil) then.
func (rt *routing) remove(pid int, wait chan struct{}) {
	w := rt.workers[pid]
	if w == nil {
		if wait != nil {
			close(wait)
		}
		return
	}
	if wait != nil {
		w.removing = append(w.removing, wait)
	}
	if w.removed {
		return
	}
	w.removed = true
	if !w.reading {
		// Paused, or its end read EOF: what is queued is read here.
		rt.drainNow(w)
		rt.drop(w)
		return
	}
	w.kick <- kickDrain
	w.c.SetReadDeadline(time.Unix(1, 0))
}

// drainNow handles what w's end holds, on the owner's goroutine (no reader
// runs).
func (rt *routing) drainNow(w *rworker) {
	w.c.SetReadDeadline(time.Time{})
	for {
		if n, err := w.c.queued(); err != nil || n == 0 {
			return
		}
		m, err := w.c.Recv()
		rt.onEvent(event{w: w, m: m, err: err})
		if err != nil && !isMsgError(err) {
			return
		}
	}
}

func (rt *routing) pause(wait chan struct{}) {
	rt.paused = true
	for _, w := range rt.workers {
		if w.reading && !w.removed {
			w.kick <- kickPause
			w.c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	if !rt.anyReading() {
		close(wait)
		return
	}
	rt.pausing = wait
}

func (rt *routing) resume() error {
	if !rt.paused {
		return nil
	}
	rt.paused = false
	for _, w := range rt.workers {
		w.c.SetReadDeadline(time.Time{})
		rt.startReader(w)
	}
	return nil
}

func (rt *routing) state() *RouterState {
	st := &RouterState{NextID: rt.nextID, Handed: rt.r.stats.handed.Load(), Returned: rt.r.stats.returned.Load(),
		Refused: rt.r.stats.refused.Load(), Failed: rt.r.stats.failed.Load()}
	for _, pid := range slices.Sorted(mapKeys(rt.workers)) {
		w := rt.workers[pid]
		fd, err := w.c.Fd()
		if err != nil {
			continue
		}
		rw := RouterWorker{Pid: pid, Generation: w.gen, Slot: w.slot, Fd: fd, Ready: w.ready, Stopping: w.stopping, Gone: w.gone}
		rw.Addrs = slices.Sorted(mapKeys(w.addrs))
		st.Workers = append(st.Workers, rw)
	}
	for _, id := range slices.Sorted(mapKeys(rt.flights)) {
		f := rt.flights[id]
		st.Flights = append(st.Flights, RouterFlight{ID: f.id, Fd: f.fd, Addr: f.addr, From: f.from, FromID: f.fromID,
			To: f.to, Tried: slices.Sorted(mapKeys(f.tried))})
	}
	return st
}

func (rt *routing) restore(st *RouterState) error {
	if len(rt.workers) > 0 || len(rt.flights) > 0 {
		return errors.New("connpass: Restore into a router in use")
	}
	var errs []error
	rt.nextID = max(rt.nextID, st.NextID)
	s := &rt.r.stats
	s.handed.Add(st.Handed)
	s.returned.Add(st.Returned)
	s.refused.Add(st.Refused)
	s.failed.Add(st.Failed)
	for _, sw := range st.Workers {
		c, err := NewConn(sw.Fd, "handover")
		if err != nil {
			errs = append(errs, fmt.Errorf("worker %d: %w", sw.Pid, err))
			continue
		}
		w := &rworker{pid: sw.Pid, gen: sw.Generation, slot: sw.Slot, c: c, addrs: map[string]bool{}, sent: map[uint64]*flight{},
			ready: sw.Ready, stopping: sw.Stopping, gone: sw.Gone}
		for _, a := range sw.Addrs {
			w.addrs[a] = true
		}
		rt.workers[w.pid] = w
	}
	var lost []*flight
	for _, sf := range st.Flights {
		setCloexec(sf.Fd)
		f := &flight{id: sf.ID, fd: sf.Fd, addr: sf.Addr, from: sf.From, slot: -1, fromID: sf.FromID, to: sf.To, tried: map[int]bool{}}
		if from := rt.workers[f.from]; from != nil {
			f.slot = from.slot
		}
		for _, p := range sf.Tried {
			f.tried[p] = true
		}
		rt.flights[f.id] = f
		s.inFlight.Add(1)
		if to := rt.workers[f.to]; to != nil && !to.gone {
			to.sent[f.id] = f
		} else {
			lost = append(lost, f)
		}
	}
	for _, w := range rt.workers {
		rt.startReader(w)
	}
	for _, f := range lost {
		rt.route(f)
	}
	return errors.Join(errs...)
}

func (rt *routing) closeAll() {
	for _, w := range rt.workers {
		if w.reading && !w.removed {
			w.kick <- kickPause
			w.c.SetReadDeadline(time.Unix(1, 0))
		}
	}
	// The readers' last events are taken here, and their descriptors
	// closed.
	rt.r.readers.Wait()
	for _, e := range rt.r.inbox.take() {
		if e.m.Fd >= 0 {
			closeFd(e.m.Fd)
		}
	}
	for _, w := range rt.workers {
		w.c.Close()
		for _, c := range w.removing {
			close(c)
		}
	}
	clear(rt.workers)
	for _, f := range rt.flights {
		closeFd(f.fd)
		rt.r.stats.inFlight.Add(^uint64(0))
	}
	clear(rt.flights)
	if rt.pausing != nil {
		close(rt.pausing)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

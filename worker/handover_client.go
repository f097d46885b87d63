package worker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/handoff-dev/handoff/internal/connpass"
)

// The process's client of its hand-over socket pair with the supervisor
// (EnvHandoverFd, package internal/connpass's protocol). There is at most
// one per process, made the first time a ServeAndDrain call wants it: the
// variable names a descriptor, which only one owner can have. The
// variable is unset then, so that a child process does not take it too.
//
// One goroutine reads the pair while a ServeAndDrain call uses the client
// (acquire, release), and dispatches what comes: Done and Returned to the
// drain that handed the connection (handOwner), Conn to the drain serving
// its address (connTaker), acknowledged at once. Sends come from any
// goroutine: the hands from the connections' Close, on net/http's
// goroutines.

// processClient is the process's client, made once.
var processClient struct {
	once sync.Once
	c    *handClient
	err  error
	made atomic.Pointer[handClient] // c, once made: for the drain's end log
}

// processHandClient returns the process's client, nil when the process
// has no socket pair (EnvHandoverFd unset, or hand-over unsupported on
// this OS).
func processHandClient() (*handClient, error) {
	processClient.once.Do(func() {
		processClient.c, processClient.err = handClientFromEnv()
		processClient.made.Store(processClient.c)
	})
	return processClient.c, processClient.err
}

// handClientFromEnv makes the client of the descriptor EnvHandoverFd
// names, and unsets the variable.
func handClientFromEnv() (*handClient, error) {
	fd, ok, err := inheritedFd(EnvHandoverFd)
	if !ok || err != nil {
		if err != nil {
			err = fmt.Errorf("worker: %w", err)
		}
		return nil, err
	}
	if !handoverSupported {
		os.NewFile(uintptr(fd), "handover").Close()
		return nil, nil
	}
	c, err := connpass.NewConn(fd, "handover")
	if err != nil {
		return nil, fmt.Errorf("worker: %s: %w", EnvHandoverFd, err)
	}
	return newHandClient(c), nil
}

// A handOwner is told what became of the connections it handed: served
// elsewhere (Done), or given back (Returned, with the connection, which is
// then its to serve or close), or lost with the pair (broken).
type handOwner interface {
	handDone(id uint64)
	handReturned(id uint64, c net.Conn)
	handBroken()
}

// A connTaker serves connections handed to this process on one address,
// as if accepted there. take reports false if it no longer takes any; c
// is then still the caller's.
type connTaker interface {
	take(c net.Conn) bool
}

// errPairBroken is what a send returns once the pair is known broken.
var errPairBroken = errors.New("worker: hand-over: the socket pair with the supervisor is broken")

// errDeaf is what a bounded send returns while the supervisor does not
// read the pair: one send waited handSendTimeout, and nothing came from
// the supervisor since.
var errDeaf = errors.New("worker: hand-over: the supervisor does not read the socket pair")

// handSendTimeout bounds the send of a hand (and of a Serve): a
// supervisor that has not read the pair for that long (stopped, hung) is
// not waited for, and the connection is served here again, the drain's old
// way, instead of holding a net/http goroutine in Close. An Ack waits
// without a bound: a lost one would make the supervisor route again a
// connection this process already serves.
var handSendTimeout = 10 * time.Second

// handClient is the process's end of its socket pair.
type handClient struct {
	conn     *connpass.Conn
	sendMu   sync.Mutex   // one send at a time, so that each has its own write deadline
	deaf     atomic.Bool  // a bounded send timed out; cleared by the next message read
	received atomic.Int64 // connections taken over, in the process's life
	brokenCh chan struct{}

	mu      sync.Mutex
	nextID  uint64
	hands   map[uint64]handOwner // hands sent, neither done nor returned
	takers  map[string]connTaker // by listening address
	owners  map[handOwner]struct{}
	users   int           // acquire minus release: the reader runs while positive
	reading chan struct{} // closed when the running reader stops or is handed to a new user; nil if none runs
	broken  bool
	logger  *slog.Logger // where the reader reports what it refused; set by the first user
}

func newHandClient(c *connpass.Conn) *handClient {
	return &handClient{
		conn:     c,
		brokenCh: make(chan struct{}),
		hands:    make(map[uint64]handOwner),
		takers:   make(map[string]connTaker),
		owners:   make(map[handOwner]struct{}),
	}
}

// acquire registers a user (a ServeAndDrain call, owner of the hands it
// sends) and starts the reader if none runs.
func (hc *handClient) acquire(o handOwner, logger *slog.Logger) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.users++
	hc.owners[o] = struct{}{}
	if logger != nil {
		hc.logger = logger
	}
	if hc.reading == nil && !hc.broken {
		hc.conn.SetReadDeadline(time.Time{})
		done := make(chan struct{})
		hc.reading = done
		go hc.read(done)
	}
}

// release ends a user: its hands still pending are forgotten (what comes
// for them later is closed), and when it was the last user, the reader is
// stopped and waited for, so that no goroutine outlives ServeAndDrain.
func (hc *handClient) release(o handOwner) {
	hc.mu.Lock()
	hc.users--
	delete(hc.owners, o)
	for id, ow := range hc.hands {
		if ow == o {
			delete(hc.hands, id)
		}
	}
	var wait chan struct{}
	if hc.users == 0 && hc.reading != nil {
		wait = hc.reading
		hc.conn.SetReadDeadline(aLongTimeAgo)
	}
	hc.mu.Unlock()
	if wait != nil {
		<-wait
	}
}

// aLongTimeAgo is a deadline in the past: what it is set on returns at once.
var aLongTimeAgo = time.Unix(1, 0)

// setTaker registers t as the taker of connections for addr.
func (hc *handClient) setTaker(addr string, t connTaker) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	hc.takers[addr] = t
}

// unsetTaker unregisters t, if it still takes connections for addr.
func (hc *handClient) unsetTaker(addr string, t connTaker) {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	if hc.takers[addr] == t {
		delete(hc.takers, addr)
	}
}

// isBroken reports whether the pair is known broken.
func (hc *handClient) isBroken() bool {
	select {
	case <-hc.brokenCh:
		return true
	default:
		return false
	}
}

// send sends m, waiting at most timeout for room in the pair (0: no
// bound); a peer gone marks the pair broken.
func (hc *handClient) send(m connpass.Msg, timeout time.Duration) error {
	if hc.isBroken() {
		return errPairBroken
	}
	var dl time.Time
	if timeout > 0 {
		dl = time.Now().Add(timeout)
	}
	hc.sendMu.Lock()
	if timeout > 0 && hc.deaf.Load() {
		hc.sendMu.Unlock()
		return errDeaf // not a wait of its own for each hand queued behind the first
	}
	hc.conn.SetWriteDeadline(dl)
	err := hc.conn.Send(m)
	if timeout > 0 && errors.Is(err, os.ErrDeadlineExceeded) {
		hc.deaf.Store(true)
	}
	hc.sendMu.Unlock()
	if errors.Is(err, io.ErrClosedPipe) {
		hc.fail()
	}
	return err
}

// hand sends the connection fd, accepted on addr, for o, and returns the
// hand's ID. The descriptor stays the caller's.
func (hc *handClient) hand(addr string, fd int, o handOwner) (uint64, error) {
	hc.mu.Lock()
	if hc.broken {
		hc.mu.Unlock()
		return 0, errPairBroken
	}
	hc.nextID++
	id := hc.nextID
	hc.hands[id] = o // before the send: its Done can come before Send returns
	hc.mu.Unlock()
	if err := hc.send(connpass.Msg{Kind: connpass.KindHand, ID: id, Addr: addr, Fd: fd}, handSendTimeout); err != nil {
		hc.mu.Lock()
		delete(hc.hands, id)
		hc.mu.Unlock()
		return 0, err
	}
	return id, nil
}

// fail marks the pair broken, once, and tells every user.
func (hc *handClient) fail() {
	hc.mu.Lock()
	if hc.broken {
		hc.mu.Unlock()
		return
	}
	hc.broken = true
	close(hc.brokenCh)
	owners := make([]handOwner, 0, len(hc.owners))
	for o := range hc.owners {
		owners = append(owners, o)
	}
	clear(hc.hands)
	hc.mu.Unlock()
	for _, o := range owners {
		o.handBroken()
	}
}

// maxBadMessages is how many undecodable messages in a row the reader
// skips before it takes the pair for broken.
const maxBadMessages = 64

// read receives and dispatches messages until the pair breaks, or until
// it has no user left.
func (hc *handClient) read(done chan struct{}) {
	bad := 0
	for {
		m, err := hc.conn.Recv()
		switch {
		case err == nil:
			bad = 0
			hc.deaf.Store(false) // the supervisor reads again
			hc.dispatch(m)
			continue
		case errors.Is(err, os.ErrDeadlineExceeded):
			hc.mu.Lock()
			if hc.users > 0 {
				// A user came meanwhile: the reader is now its.
				hc.conn.SetReadDeadline(time.Time{})
				close(done)
				done = make(chan struct{})
				hc.reading = done
				hc.mu.Unlock()
				continue
			}
			hc.reading = nil
			hc.mu.Unlock()
			close(done)
			return
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrClosed), errors.Is(err, net.ErrClosed), isSyscallError(err):
		default:
			if bad++; bad < maxBadMessages {
				hc.log("worker: hand-over: bad message from the supervisor", slog.Any("error", err))
				continue
			}
		}
		hc.log("worker: hand-over: the socket pair with the supervisor is broken; draining without hand-over", slog.Any("error", err))
		hc.fail()
		hc.mu.Lock()
		hc.reading = nil
		hc.mu.Unlock()
		close(done)
		return
	}
}

func isSyscallError(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se)
}

func (hc *handClient) log(msg string, attrs ...any) {
	hc.mu.Lock()
	l := hc.logger
	hc.mu.Unlock()
	if l != nil {
		l.Warn(msg, append([]any{slog.Int("pid", os.Getpid())}, attrs...)...)
	}
}

// dispatch acts on one message from the supervisor.
func (hc *handClient) dispatch(m connpass.Msg) {
	switch {
	case m.Kind == connpass.KindDone:
		if o := hc.settle(m.ID); o != nil {
			o.handDone(m.ID)
		}
	case m.Kind == connpass.KindConn && m.Returned:
		o := hc.settle(m.ID)
		if o == nil {
			closeFd(m.Fd) // its drain is over: the client sees a clean close
			return
		}
		c, err := fileConn(m.Fd)
		if err != nil {
			hc.log("worker: hand-over: a returned connection cannot be served", slog.Any("error", err))
			return
		}
		o.handReturned(m.ID, c)
	case m.Kind == connpass.KindConn:
		hc.mu.Lock()
		t := hc.takers[m.Addr]
		hc.mu.Unlock()
		ok := false
		if t != nil {
			c, err := fileConn(m.Fd)
			m.Fd = -1
			if err != nil {
				hc.log("worker: hand-over: refused a connection", slog.String("addr", m.Addr), slog.Any("error", err))
			} else if ok = t.take(c); !ok {
				c.Close()
			}
		}
		if m.Fd >= 0 {
			closeFd(m.Fd)
		}
		if ok {
			hc.received.Add(1)
		}
		hc.send(connpass.Msg{Kind: connpass.KindAck, ID: m.ID, OK: ok, Fd: -1}, 0)
	default:
		closeFd(m.Fd) // not a message for a worker
	}
}

// settle forgets hand id and returns whose it was, nil if unknown.
func (hc *handClient) settle(id uint64) handOwner {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	o := hc.hands[id]
	delete(hc.hands, id)
	return o
}

// fileConn makes a connection of a received descriptor, which it closes
// (the connection has its own copy), after checking that it is a
// connected stream socket.
func fileConn(fd int) (net.Conn, error) {
	if err := connpass.CheckConn(fd); err != nil {
		closeFd(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "handed")
	c, err := net.FileConn(f)
	f.Close()
	return c, err
}

// closeFd closes a received descriptor, if any.
func closeFd(fd int) {
	if fd >= 0 {
		os.NewFile(uintptr(fd), "handed").Close()
	}
}

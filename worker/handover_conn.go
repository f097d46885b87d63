package worker

import (
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync"
	"syscall"
	"time"
)

// handConn is a plaintext connection the drain may hand over. It sees
// every Read and Write of the server, so it knows exactly when the
// connection is idle between two requests:
//
//   - net/http's state for it is New or Idle,
//   - no byte has been read since the server last wrote, and
//   - the server reads asking for its whole buffer: net/http's bufio.Reader
//     fills itself with a Read as long as its buffer (4096 bytes, the
//     length of the connection's first Read) only when it holds no byte;
//     with bytes of the next request in it, or one byte kept by the
//     background read it runs during a handler, it asks for less, or does
//     not read at all.
//
// Once the drain wants it handed (want), such a Read returns a timeout
// without reading, or, if the server already waits in one, the read is
// kicked: the drain sets the read deadline of the socket in the past, and
// Go's poller returns the timeout without consuming a byte. On that
// timeout net/http closes the connection without writing anything, and
// Close, instead of closing, hands the socket to the supervisor, with
// whatever the client sent meanwhile still queued in the kernel. If bytes
// win the race, the Read returns them, the kick is abandoned and the
// server's own read deadline (kept from its SetReadDeadline calls) is put
// back: the request is served, and the connection is handed at its next
// idle point.
type handConn struct {
	net.Conn               // the accepted connection: a syscall.Conn
	hand     *drainHand    // nil: never handed (a connection given back, or served again after a failed hand)
	addr     string        // Addr().String() of the listener it came on
	closed   chan struct{} // closed by Close
	once     sync.Once
	closeErr error

	mu             sync.Mutex
	firstRead      int       // length of the first Read: the server's buffer
	idle           bool      // net/http's state is New or Idle
	hijacked       bool      // no longer the server's: never handed
	readSinceWrite bool      // a byte was read since the last Write
	reading        int       // length of the Read the server waits in; 0: none
	want           bool      // hand it at its next idle point
	kicking        bool      // the waiting Read was kicked (read deadline in the past)
	kicked         bool      // a Read returned the kick: Close hands it
	readDL         time.Time // the server's own read deadline
}

// newHandConn wraps c, accepted on the listener whose address is addr, or
// returns c itself if it cannot be handed (not a syscall.Conn).
func newHandConn(c net.Conn, addr string, h *drainHand) net.Conn {
	if _, ok := c.(syscall.Conn); !ok {
		return c
	}
	return &handConn{Conn: c, hand: h, addr: addr, closed: make(chan struct{}), idle: true}
}

// kickErr is the error a kicked Read returns: a timeout, which net/http
// takes for a client gone quiet and answers with a silent close.
func (c *handConn) kickErr() error {
	return &net.OpError{Op: "read", Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: os.ErrDeadlineExceeded}
}

// idleRead reports whether a Read of n bytes now would be at an idle
// point. c.mu is held.
func (c *handConn) idleRead(n int) bool {
	return c.hand != nil && c.idle && !c.hijacked && !c.readSinceWrite && n > 0 && n == c.firstRead
}

func (c *handConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.firstRead == 0 {
		c.firstRead = len(p)
	}
	if c.kicked || c.want && c.idleRead(len(p)) {
		c.kicked = true
		c.mu.Unlock()
		return 0, c.kickErr()
	}
	c.reading = len(p)
	c.mu.Unlock()

	n, err := c.Conn.Read(p)

	c.mu.Lock()
	defer c.mu.Unlock()
	c.reading = 0
	if n > 0 {
		c.readSinceWrite = true
	}
	if c.kicking {
		c.kicking = false
		own := !c.readDL.IsZero() && !time.Now().Before(c.readDL) // the server's own deadline passed too
		if n == 0 && errors.Is(err, os.ErrDeadlineExceeded) && !own {
			c.kicked = true
			return 0, c.kickErr()
		}
		c.Conn.SetReadDeadline(c.readDL) // data won: the kick is abandoned
	}
	return n, err
}

func (c *handConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.mu.Lock()
		c.readSinceWrite = false
		c.mu.Unlock()
	}
	return n, err
}

// ReadFrom keeps net/http's sendfile path for responses; it is a Write.
func (c *handConn) ReadFrom(r io.Reader) (int64, error) {
	n, err := io.Copy(c.Conn, r)
	if n > 0 {
		c.mu.Lock()
		c.readSinceWrite = false
		c.mu.Unlock()
	}
	return n, err
}

func (c *handConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if c.kicking {
		return nil // the kick's deadline holds; abandoning it puts t back
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *handConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.readDL = t
	if c.kicking {
		return c.Conn.SetWriteDeadline(t)
	}
	return c.Conn.SetDeadline(t)
}

// setState follows net/http's state of c.
func (c *handConn) setState(st http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch st {
	case http.StateNew, http.StateIdle:
		c.idle = true
	case http.StateActive:
		c.idle = false
	case http.StateHijacked:
		c.idle, c.hijacked = false, true
	}
}

// handAtIdle asks for c to be handed at its next idle point: at once if
// the server waits in an idle Read. It reports whether c is idle now.
func (c *handConn) handAtIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.hand == nil || c.hijacked {
		return false
	}
	c.want = true
	if c.reading > 0 && !c.kicking && !c.kicked && c.idleRead(c.reading) {
		c.kicking = true
		c.Conn.SetReadDeadline(aLongTimeAgo)
	}
	return c.idle && !c.readSinceWrite
}

// keep cancels handAtIdle, for a connection that can no longer be handed
// (the pair broke): it stays with the server, and a Read kicked already
// ends in a Close that serves it again.
func (c *handConn) keep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.want = false
}

// handing reports whether c will be handed rather than closed by the
// drain, as far as it knows now.
func (c *handConn) handing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hand != nil && !c.hijacked
}

// Close closes c, or hands it over if its Read was kicked.
func (c *handConn) Close() error {
	c.once.Do(func() {
		c.mu.Lock()
		kicked := c.kicked
		c.mu.Unlock()
		if kicked && c.hand != nil {
			c.closeErr = c.hand.handOff(c)
		} else {
			c.closeErr = c.Conn.Close()
		}
		close(c.closed)
	})
	return c.closeErr
}

// NetConn returns the connection itself.
func (c *handConn) NetConn() net.Conn { return c.Conn }

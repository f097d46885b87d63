package worker

import (
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// The two-step GOAWAY (RFC 9113 §6.8). Go's HTTP/2 server, shut down, sends
// one GOAWAY naming the last stream it has read: streams its client sent
// meanwhile are refused, and a client that does not retry them (h2load,
// many proxies) fails them. So the drain first sends a shutdown notice, a
// GOAWAY naming the largest stream id with NO_ERROR, and a PING: the
// client opens no stream after the notice, and its PING ACK comes after
// every stream it opened before. Once the ACK is read (or after
// noticeWait, or at the drain deadline), the server sends its own GOAWAY,
// which now names every stream the client sent. nghttp2
// (nghttp2_submit_shutdown_notice) and Envoy drain the same way.
//
// One more round trip comes first. A client reads a batch of frames, then
// writes: when a response in the batch ends a stream, it may queue a new
// request, and if the notice comes later in the same batch, that request
// can no longer be sent, and fails without ever reaching the server
// (nghttp2 fails it with NGHTTP2_ERR_START_STREAM_NOT_ALLOWED; h2load
// counts it). So the drain sends a PING alone and holds the server's
// frames back until its ACK: the client has then read everything before
// it, and sent what it queued. The notice, written next, is the first
// frame of a batch, and finds no request waiting. The server's frames are
// held back for one round trip, once, at most noticeWait.
//
// Go's server has no hook for any of this, so h2Conn, the connection the
// server is given, writes these frames between the server's own (see
// h2drain.go for how a connection comes to be served through one).

// noticeWait bounds the round trips before the final GOAWAY.
const noticeWait = time.Second

// h2FlushWait is how long an HTTP/2 connection must have been idle before
// the drain deadline closes it: the server reports a connection idle with
// the last frames of its last stream still in its write buffer, and
// flushes them on the same goroutine right after (see closeIdle).
const h2FlushWait = 20 * time.Millisecond

// clientPreface is what an HTTP/2 client sends first (RFC 9113 §3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// prefaceTimeout bounds the wait for the client preface, as Go's HTTP/2
// server does, when the server has no read timeout of its own.
const prefaceTimeout = 10 * time.Second

// h2Conn is an HTTP/2 server connection (TLS, or TCP for h2c) that can write
// frames of its own between the server's, hold the server's frames back,
// and sees the ACKs of its PINGs. The server reads from it the client
// preface first, then the frames.
type h2Conn struct {
	net.Conn              // the TLS connection, or the TCP connection for h2c: what is written to and closed
	r        io.Reader    // what the client sent, the preface first
	tls      bool         // Conn is a TLS connection
	srv      *http.Server // serves it, and only it: its shutdown is the final GOAWAY
	endCtx   func()       // releases the context its requests derive from (see addH2)

	wmu sync.Mutex // held across every write to Conn

	mu       sync.Mutex
	out      frameScanner  // what the server wrote; under mu and wmu
	pending  []byte        // frames waiting for a frame boundary
	hold     bool          // with pending: hold the server's frames back once they are written
	gate     chan struct{} // non-nil while the server's frames are held back; closed to let them go
	final    bool          // a GOAWAY went out or will: no notice from now on
	noticing bool          // notice was called

	pings [2][8]byte       // the payloads of the flushing PING and of the notice's PING
	acks  [2]chan struct{} // closed when the ACK of each is read
	once  [2]sync.Once
	rmu   sync.Mutex
	skip  int          // preface bytes still to be read; under rmu
	in    frameScanner // what the client sent, after the preface; under rmu

	reported  chan struct{} // closed when the HTTP/2 server first reports the connection's state
	report    sync.Once
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed when the server is done with the connection
	doneOnce  sync.Once
}

// newH2Conn returns an h2Conn over c, reading from r (c if nil), whose
// first bytes are the client preface.
func newH2Conn(c net.Conn, r io.Reader) *h2Conn {
	if r == nil {
		r = c
	}
	h := &h2Conn{
		Conn: c, r: r, skip: len(clientPreface),
		acks:     [2]chan struct{}{make(chan struct{}), make(chan struct{})},
		reported: make(chan struct{}), closing: make(chan struct{}), done: make(chan struct{}),
	}
	rand.Read(h.pings[0][:]) // never fails (crypto/rand)
	rand.Read(h.pings[1][:])
	return h
}

// Close closes the connection; the server closes it more than once.
func (h *h2Conn) Close() error {
	h.closeOnce.Do(func() {
		close(h.closing)
		h.closeErr = h.Conn.Close()
	})
	return h.closeErr
}

// Read reads what the client sent and looks in it for the ACKs of our
// PINGs. Go's server ignores a PING ACK for a PING it did not send.
func (h *h2Conn) Read(p []byte) (int, error) {
	n, err := h.r.Read(p)
	h.rmu.Lock()
	q := p[:n]
	skip := min(h.skip, len(q))
	h.skip -= skip
	h.in.feed(q[skip:], func(f frame) {
		if f.typ != framePing || f.flags&flagAck == 0 || f.length != 8 {
			return
		}
		// The payloads are random: only the ACKs of our PINGs have them.
		for i := range h.pings {
			if string(f.head) == string(h.pings[i][:]) {
				h.once[i].Do(func() { close(h.acks[i]) })
			}
		}
	})
	h.rmu.Unlock()
	return n, err
}

// Write writes what the server wrote, then frames of ours if some are
// waiting and the server's bytes ended a frame. While the server's frames
// are held back, it waits.
func (h *h2Conn) Write(p []byte) (int, error) {
	for {
		h.wmu.Lock()
		h.mu.Lock()
		gate := h.gate
		h.mu.Unlock()
		if gate == nil {
			break
		}
		h.wmu.Unlock()
		<-gate // finish opens it, whatever happens
	}
	defer h.wmu.Unlock()
	n, err := h.Conn.Write(p)
	h.mu.Lock()
	h.out.feed(p[:n], func(f frame) {
		if f.typ == frameGoAway {
			h.final, h.pending = true, nil
		}
	})
	b := h.injectable()
	h.mu.Unlock()
	if b != nil && err == nil {
		h.Conn.Write(b) // an error here comes back on the server's next write
	}
	return n, err
}

// injectable returns the frames waiting if they may be written now, and
// takes them. h.mu is held, and so is h.wmu.
func (h *h2Conn) injectable() []byte {
	// The server's first frame must be its SETTINGS (RFC 9113 §3.4).
	if h.pending == nil || h.final || !h.out.boundary() || h.out.frames == 0 {
		return nil
	}
	b := h.pending
	h.pending = nil
	if h.hold && h.gate == nil {
		h.gate = make(chan struct{})
	}
	return b
}

// inject writes b between the server's frames: at once if the server is
// between frames, otherwise right after the frame it is writing. With
// hold, the server's frames are held back after b until release or
// finish; otherwise they are let go. It does nothing after finish, or
// once the server has sent a GOAWAY of its own. It may block while the
// server is blocked writing.
func (h *h2Conn) inject(b []byte, hold bool) {
	h.wmu.Lock()
	defer h.wmu.Unlock()
	h.mu.Lock()
	if h.final {
		h.mu.Unlock()
		return
	}
	h.pending, h.hold = b, hold
	if !hold {
		h.release() // the frame the server may be in the middle of must end
	}
	b = h.injectable()
	h.mu.Unlock()
	if b != nil {
		h.Conn.Write(b) // an error comes back on the server's next write
	}
}

// release lets the server's frames go. h.mu is held.
func (h *h2Conn) release() {
	if h.gate != nil {
		close(h.gate)
		h.gate = nil
	}
}

// notice runs the connection's side of the drain's first steps: a PING
// alone, with the server's frames held back until its ACK; then the
// shutdown notice and a second PING, whose ACK the drain waits for (see
// above). It returns early when stop is closed or the server is done with
// the connection, and at once if it was called before: a connection HTTP/2
// reports only after the drain started gets a late GOAWAY too.
func (h *h2Conn) notice(stop <-chan struct{}) {
	h.mu.Lock()
	again := h.noticing
	h.noticing = true
	h.mu.Unlock()
	if again {
		return // a late GOAWAY for a connection the drain start reached
	}
	h.inject(appendFrame(nil, framePing, 0, h.pings[0]), true)
	select {
	case <-h.acks[0]:
	case <-stop:
		return
	case <-h.done:
		return
	}
	b := appendFrame(nil, frameGoAway, 0, goAwayPayload(1<<31-1, 0))
	h.inject(appendFrame(b, framePing, 0, h.pings[1]), false)
}

// noticed is closed when the client has acknowledged the PING that
// follows the notice.
func (h *h2Conn) noticed() <-chan struct{} { return h.acks[1] }

// finish drops frames of ours not yet written and lets the server's go:
// the server is about to send its own GOAWAY, and a GOAWAY must never
// name a larger stream id than the one before it. It does not block.
func (h *h2Conn) finish() {
	h.mu.Lock()
	h.final, h.pending = true, nil
	h.release()
	h.mu.Unlock()
}

// underlying returns the connection under an h2Conn given to Go's HTTP/2
// server, or c itself.
func underlying(c net.Conn) net.Conn {
	if h, ok := c.(*h2Conn); ok {
		return h.Conn
	}
	return c
}

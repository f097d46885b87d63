package worker

import (
	"bufio"
	"net"
	"net/http"
	"sync"
)

// Hijack implements http.Hijacker. The connection it returns is tracked:
// the drain waits for it to be closed, until the deadline, and closes it
// then.
func (w *drainWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err != nil {
		return c, rw, err
	}
	w.hijacked = true
	h := &hijackedConn{Conn: c, d: w.d}
	w.d.mu.Lock()
	w.d.hijacked[h] = struct{}{}
	w.d.mu.Unlock()
	return h, rw, nil
}

// hijackedConn is a hijacked connection the drain waits for.
type hijackedConn struct {
	net.Conn
	d    *drainer
	once sync.Once
	err  error
}

// Close closes the connection and tells the drain.
func (h *hijackedConn) Close() error {
	h.once.Do(func() {
		h.err = h.Conn.Close()
		h.d.mu.Lock()
		delete(h.d.hijacked, h)
		h.d.mu.Unlock()
		h.d.ring()
	})
	return h.err
}

// NetConn returns the hijacked connection itself.
func (h *hijackedConn) NetConn() net.Conn { return h.Conn }

// closeHijacked closes every hijacked connection still open.
func (d *drainer) closeHijacked() {
	d.mu.Lock()
	hs := make([]*hijackedConn, 0, len(d.hijacked))
	for h := range d.hijacked {
		hs = append(hs, h)
	}
	d.mu.Unlock()
	for _, h := range hs {
		h.Close()
	}
}

package connpass

import (
	"os"
	"time"
)

// Conn is one end of a worker's socket pair with its supervisor. Send may
// be called from several goroutines at once; Recv from one at a time.
type Conn struct {
	f *os.File
}

// SetReadDeadline makes a waiting or later Recv return
// os.ErrDeadlineExceeded at t, with nothing consumed; the zero time removes
// the deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.f.SetReadDeadline(t) }

// SetWriteDeadline makes a Send that waits for room in the peer's queue
// return os.ErrDeadlineExceeded at t; the zero time removes the deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.f.SetWriteDeadline(t) }

// Close closes this end: the peer's Recv then returns io.EOF, and the
// kernel closes the descriptors queued to this end and not yet received.
func (c *Conn) Close() error { return c.f.Close() }

package worker

import (
	"net"
	"sync"
)

// connListener is a listener that accepts one connection, then blocks
// until it is closed, or until done is closed.
type connListener struct {
	c        net.Conn
	done     <-chan struct{} // nil: never
	once     sync.Once
	accepted chan struct{} // closed when c has been accepted
	closed   chan struct{}
	close    sync.Once
}

func newConnListener(c net.Conn) *connListener {
	return &connListener{c: c, accepted: make(chan struct{}), closed: make(chan struct{})}
}

func (l *connListener) Accept() (net.Conn, error) {
	var c net.Conn
	l.once.Do(func() {
		c = l.c
		close(l.accepted)
	})
	if c != nil {
		return c, nil
	}
	select {
	case <-l.closed:
	case <-l.done:
	}
	return nil, net.ErrClosed
}

func (l *connListener) Close() error {
	l.close.Do(func() { close(l.closed) })
	return nil
}

func (l *connListener) Addr() net.Addr { return l.c.LocalAddr() }

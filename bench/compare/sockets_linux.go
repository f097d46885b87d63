package main

import (
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"
)

// connWatch counts, from the kernel's side, the TCP connections made to
// one address: it reads /proc/net/tcp every so often and once more at the
// end. A connection is a client end's socket inode, seen while open; or,
// for a connection never seen open, its client port, seen at either end
// and in any state: one closed between two reads still shows at the end,
// because whichever end closed first holds it in TIME_WAIT for 60 s. The
// port alone does not name a connection: the kernel may give a client the
// port of a connection whose TIME_WAIT is at the server's end. Only a
// connection that lived shorter than a period and ended with a reset (no
// TIME_WAIT), or one never seen open on a port another was seen open on,
// can be missed.
//
// Ports seen before the load starts (a start-up probe's connection) are
// left out.
type connWatch struct {
	target netip.AddrPort
	stop   chan struct{}
	done   chan struct{}

	mu       sync.Mutex
	baseline map[uint16]bool
	ports    map[uint16]bool   // client ports of connections to target, any state
	inodes   map[uint64]uint16 // the client ends' socket inodes, seen open, and their ports
	reads    int               // reads of /proc/net/tcp
	slowest  time.Duration     // the longest read, to judge the period
	err      error             // the first read that failed
	readFile func() ([]byte, error)
}

// watchConns reads the sockets once as the baseline, then every period
// until finish.
func watchConns(target netip.AddrPort, period time.Duration) *connWatch {
	w := &connWatch{target: target, stop: make(chan struct{}), done: make(chan struct{}),
		baseline: map[uint16]bool{}, ports: map[uint16]bool{}, inodes: map[uint64]uint16{},
		readFile: func() ([]byte, error) { return os.ReadFile("/proc/net/tcp") }}
	w.sample(true)
	go func() {
		defer close(w.done)
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.sample(false)
			}
		}
	}()
	return w
}

// sample reads the kernel's sockets once.
func (w *connWatch) sample(baseline bool) {
	begin := time.Now()
	text, err := w.readFile()
	var socks []tcpSocket
	if err == nil {
		socks, err = parseProcNetTCP(text)
	}
	took := time.Since(begin)
	w.mu.Lock()
	defer w.mu.Unlock()
	w.reads++
	w.slowest = max(w.slowest, took)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("reading /proc/net/tcp: %w", err)
	}
	for _, s := range socks {
		var port uint16
		switch {
		case s.State == tcpListen:
			continue
		case s.Remote == w.target && s.Local != w.target:
			port = s.Local.Port() // the client's end
			if s.Inode != 0 && !baseline && !w.baseline[port] {
				w.inodes[s.Inode] = s.Local.Port()
			}
		case s.Local == w.target:
			port = s.Remote.Port() // the server's end
		default:
			continue
		}
		switch {
		case baseline:
			w.baseline[port] = true
		case !w.baseline[port]:
			w.ports[port] = true
		}
	}
}

// seen returns the client ports seen so far.
func (w *connWatch) seen() map[uint16]bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.ports)
}

// finish stops the periodic reads, reads once more, and returns the counts.
func (w *connWatch) finish() kernelCount {
	close(w.stop)
	<-w.done
	w.sample(false)
	w.mu.Lock()
	defer w.mu.Unlock()
	open := map[uint16]bool{}
	for _, port := range w.inodes {
		open[port] = true
	}
	k := kernelCount{Conns: len(w.inodes), Inodes: len(w.inodes), Reads: w.reads, Slowest: w.slowest}
	for port := range w.ports {
		if !open[port] {
			k.Conns++ // never seen open: its port stands for it
		}
	}
	if w.err != nil {
		k.Err = w.err.Error()
	}
	return k
}

// connLog notes connections as they close: their local port, and how
// long they lived. Compared with a connWatch's ports, it tells which
// connections the kernel was not seen to hold, and how short they were.
type connLog struct {
	mu    sync.Mutex
	conns []loggedConn
}

type loggedConn struct {
	port  uint16
	lived time.Duration
}

// add notes c, open since from, as closed now.
func (l *connLog) add(c net.Conn, from time.Time) {
	a, ok := c.LocalAddr().(*net.TCPAddr)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.conns = append(l.conns, loggedConn{port: uint16(a.Port), lived: time.Since(from)})
}

// count is how many connections were noted.
func (l *connLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.conns)
}

// unseen returns how many noted connections have a port not in seen, and
// the longest-lived of them.
func (l *connLog) unseen(seen map[uint16]bool) (n int, longest time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range l.conns {
		if !seen[c.port] {
			n++
			longest = max(longest, c.lived)
		}
	}
	return n, longest
}

// dial is a plain TCP dial for load.WithDial, like the raw client's own,
// whose connections are noted when they close.
func (l *connLog) dial(ctx context.Context, addr string) (net.Conn, error) {
	d := net.Dialer{KeepAlive: -1}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &noted{Conn: c, l: l, from: time.Now()}, nil
}

// noted is a connection that notes itself in its log when closed.
type noted struct {
	net.Conn
	l    *connLog
	from time.Time
	once sync.Once
}

func (c *noted) Close() error {
	c.once.Do(func() { c.l.add(c.Conn, c.from) })
	return c.Conn.Close()
}

package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

// TestConnWatch: the kernel's count sees every connection made after the
// baseline, open or closed (in TIME_WAIT) by the end, and none before it.
func TestConnWatch(t *testing.T) {
	checkClean(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 8)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	before := dial() // in the baseline: not counted
	defer before.Close()
	(<-accepted).Close() // closed by the server first: TIME_WAIT on its side

	w := watchConns(netip.MustParseAddrPort(ln.Addr().String()), time.Hour) // only the baseline and the end
	var server []net.Conn
	for i := range 3 {
		c := dial()
		s := <-accepted
		if i == 0 {
			c.Close() // closed by the client first: TIME_WAIT on its side
			s.Close()
			continue
		}
		defer c.Close()
		server = append(server, s)
	}
	k := w.finish()
	for _, s := range server {
		s.Close()
	}
	if k.Conns != 3 || k.Inodes != 2 || k.Err != "" || k.Reads != 2 {
		t.Errorf("kernel count %+v; want 3 connections, 2 client inodes open, 2 reads", k)
	}
}

// TestConnWatchPortReuse: two connections from one client port, the
// first closed by the server (its TIME_WAIT at the server's end, which
// does not keep the client from the port), count as two: the kernel's
// count tells connections apart by their client inodes.
func TestConnWatchPortReuse(t *testing.T) {
	checkClean(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	w := watchConns(netip.MustParseAddrPort(ln.Addr().String()), time.Hour)
	var port int
	for range 2 {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			w.finish()
			t.Skipf("dialling from port %d again: %v", port, err)
		}
		port = c.LocalAddr().(*net.TCPAddr).Port
		s, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		w.sample(false) // seen open
		s.Close()       // the server first: TIME_WAIT at its end
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Fatalf("client read %v, want EOF", err)
		}
		c.Close()
	}
	if k := w.finish(); k.Conns != 2 || k.Inodes != 2 {
		t.Errorf("kernel count %+v; want 2 connections from one port", k)
	}
}

// TestTLSProxy: each client connection through the tunnel is one
// handshake and one upstream connection; an upstream that closes makes
// the client shake hands again; handshake CPU is counted on both sides.
func TestTLSProxy(t *testing.T) {
	checkClean(t)
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if served.Add(1)%10 == 0 {
			w.Header().Set("Connection", "close") // every tenth answer closes its connection
		}
		fmt.Fprintln(w, "ok")
	}))
	defer srv.Close()
	p, err := startTLSProxy(srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	const clients, per = 2, 25
	res, err := load.Run(testContext(t), p.addr(), load.WithClients(clients), load.WithRequests(per),
		load.WithMethod(load.Mixed), load.WithDial(p.dial), load.WithDuration(time.Minute))
	p.close()
	if err != nil {
		t.Fatal(err)
	}
	// 50 requests, a close after every tenth answer: 5 closes, each a new
	// connection unless it was a client's last request.
	srvN, srvCPU, srvAll := p.server.since(t0)
	cliN, cliCPU, _ := p.client.since(t0)
	if res.Stats().OK() != clients*per || res.Dials != srvAll || srvN != srvAll || cliN != srvAll ||
		int(p.upDials.Load()) != srvAll || srvAll < clients+3 || srvAll > clients+5 {
		t.Errorf("%d ok, %d dials, handshakes %d (server) %d (client), %d upstream dials; want %d ok and %d-%d of each",
			res.Stats().OK(), res.Dials, srvAll, cliN, p.upDials.Load(), clients*per, clients+3, clients+5)
	}
	if srvCPU <= 0 || cliCPU <= 0 || srvCPU > time.Duration(srvAll)*time.Second {
		t.Errorf("handshake CPU: server %v, client %v", srvCPU, cliCPU)
	}
	if p.negotiated() == "" {
		t.Errorf("no TLS parameters noted")
	}
	if n, _, _ := p.server.since(time.Now()); n != 0 {
		t.Errorf("%d handshakes after the end", n)
	}
}

// TestTLSProxyUpstreamClose: a connection the upstream closes while idle
// is closed to the client too, which then sees EOF on its next request,
// as it would from the server itself.
func TestTLSProxyUpstreamClose(t *testing.T) {
	checkClean(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(c)
		if req, err := http.ReadRequest(br); err == nil {
			req.Body.Close()
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
		}
		c.Close() // idle now: closed as a drain would
	}()
	p, err := startTLSProxy(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ctx := testContext(t)
	c, err := p.dial(ctx, p.addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for i := range 2 {
		req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
		req.Write(c)
		resp, err := http.ReadResponse(br, req)
		if i == 0 {
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			continue
		}
		switch {
		case err == nil:
			t.Errorf("second request answered over a connection the upstream closed")
		case errors.Is(err, os.ErrDeadlineExceeded):
			t.Errorf("the tunnel kept the client's connection open after the upstream closed: %v", err)
		}
	}
}

// TestReconnectRun runs the scenario at handoff for real, both modes: the
// restarts complete, no request fails, and the kernel saw every
// connection the clients (or the tunnel) made.
func TestReconnectRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example")
	}
	h := testHarness(t)
	h.cfg.reconnects = 2
	for _, mode := range reconnectModes {
		t.Run(mode, func(t *testing.T) {
			checkClean(t)
			s := &handoffSubject{bin: h.bins.example, workers: 2}
			r := h.reconnectRun(testContext(t), s, mode, 1)
			if r.Err != "" || r.Restarts != 2 || r.Seen != 2 || r.Requests == 0 || r.Failed != 0 {
				t.Fatalf("run: %+v", r)
			}
			if !r.agrees() || r.Dials < r.Clients || r.Connected != r.watched() || r.Kernel.Missed != 0 {
				t.Errorf("dials %d, upstream %d, connected %d, kernel %+v", r.Dials, r.UpstreamDials, r.Connected, r.Kernel)
			}
			if mode == rcTLS && (r.HandshakesAll != r.Dials || r.UpstreamDials != r.Dials || r.TLSParams == "") {
				t.Errorf("tls: %d handshakes, %d upstream dials, %d dials, %q", r.HandshakesAll, r.UpstreamDials, r.Dials, r.TLSParams)
			}
			t.Logf("%s: %d requests, %d dials, kernel %d, %s reconnects per restart, %d handshakes after the first restart (%v server CPU)",
				mode, r.Requests, r.Dials, r.Kernel.Conns, ratef(r.perRestart()), r.Handshakes, r.ServerCPU)
		})
	}
}

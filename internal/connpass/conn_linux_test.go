package connpass

import (
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fdCount counts this process's open descriptors.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkFds fails the test if it ends with more descriptors than it began.
func checkFds(t *testing.T) {
	before := fdCount(t)
	t.Cleanup(func() {
		if after := fdCount(t); after != before {
			t.Errorf("%d descriptors open after the test, %d before", after, before)
		}
	})
}

// pair returns both ends of a socket pair as Conns.
func pair(t *testing.T) (*Conn, *Conn) {
	t.Helper()
	a, remote, err := Pair()
	if err != nil {
		t.Fatal(err)
	}
	// A copy: remote's finalizer would close its descriptor, by then
	// perhaps another's.
	fd, err := unix.Dup(int(remote.Fd()))
	remote.Close()
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewConn(fd, "remote")
	if err != nil {
		t.Fatal(err)
	}
	return a, b
}

// tcpPair returns both ends of a TCP connection on 127.0.0.1.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, err = net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func tcpFd(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(s uintptr) { fd = int(s) })
	return fd
}

// TestConnTravels: a TCP connection sent over the pair is the same
// connection on the other side, its queued bytes with it.
func TestConnTravels(t *testing.T) {
	checkFds(t)
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	client, server := tcpPair(t)
	if _, err := client.Write([]byte("GET / HTTP/1.1\r\n")); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(Msg{Kind: KindHand, ID: 42, Addr: server.LocalAddr().String(), Fd: tcpFd(t, server)}); err != nil {
		t.Fatal(err)
	}
	server.Close() // the message holds the connection
	m, err := b.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != KindHand || m.ID != 42 || m.Addr != client.RemoteAddr().String() || m.Fd < 0 {
		t.Fatalf("received %+v", m)
	}
	if err := CheckConn(m.Fd); err != nil {
		t.Fatal(err)
	}
	if fl, _ := unix.FcntlInt(uintptr(m.Fd), unix.F_GETFD, 0); fl&unix.FD_CLOEXEC == 0 {
		t.Error("received descriptor is not close-on-exec")
	}
	f := os.NewFile(uintptr(m.Fd), "conn")
	got, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer got.Close()
	buf := make([]byte, 64)
	got.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := got.Read(buf)
	if err != nil || string(buf[:n]) != "GET / HTTP/1.1\r\n" {
		t.Fatalf("read %q, %v from the received connection", buf[:n], err)
	}
	if _, err := got.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = client.Read(buf)
	if err != nil || string(buf[:n]) != "pong" {
		t.Fatalf("client read %q, %v", buf[:n], err)
	}
}

func TestRecvEOF(t *testing.T) {
	checkFds(t)
	a, b := pair(t)
	defer b.Close()
	a.Close()
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("Recv after the peer closed: %v, want io.EOF", err)
	}
	err := b.Send(Msg{Kind: KindDone, ID: 1, Fd: -1})
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("Send to a closed peer: %v, want io.ErrClosedPipe", err)
	}
}

// TestRecvReadsPastReset: a peer that closes with messages of this end
// unread makes the kernel report ECONNRESET first; the messages it sent
// before closing are still read, then io.EOF.
func TestRecvReadsPastReset(t *testing.T) {
	checkFds(t)
	a, b := pair(t)
	defer b.Close()
	if err := b.Send(Msg{Kind: KindDone, ID: 1, Fd: -1}); err != nil { // left unread by a
		t.Fatal(err)
	}
	for id := uint64(10); id < 13; id++ {
		if err := a.Send(Msg{Kind: KindAck, ID: id, Fd: -1}); err != nil {
			t.Fatal(err)
		}
	}
	a.Close()
	for id := uint64(10); id < 13; id++ {
		m, err := b.Recv()
		if err != nil || m.ID != id {
			t.Fatalf("Recv = %+v, %v; want the ack of %d the peer sent before it closed", m, err, id)
		}
	}
	if _, err := b.Recv(); err != io.EOF {
		t.Fatalf("Recv after the queued messages: %v, want io.EOF", err)
	}
}

// TestDeadlineConsumesNothing: a Recv stopped by its deadline leaves the
// message for the next one.
func TestDeadlineConsumesNothing(t *testing.T) {
	checkFds(t)
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	b.SetReadDeadline(time.Now().Add(-time.Second))
	if err := a.Send(Msg{Kind: KindDone, ID: 5, Fd: -1}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Recv(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Recv past its deadline: %v", err)
	}
	b.SetReadDeadline(time.Time{})
	m, err := b.Recv()
	if err != nil || m.Kind != KindDone || m.ID != 5 {
		t.Fatalf("Recv = %+v, %v", m, err)
	}
}

// TestRecvClosesStrays: descriptors on a message that should carry none,
// or more than one, are closed, and the next message is read.
func TestRecvClosesStrays(t *testing.T) {
	checkFds(t)
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	afd, err := a.Fd()
	if err != nil {
		t.Fatal(err)
	}
	_, server := tcpPair(t)
	fd := tcpFd(t, server)
	send := func(m Msg, fds ...int) {
		t.Helper()
		p, err := m.Encode()
		if err != nil {
			t.Fatal(err)
		}
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if err := unix.Sendmsg(afd, p, oob, nil, 0); err != nil {
			t.Fatal(err)
		}
	}
	send(Msg{Kind: KindDone, ID: 1}, fd)
	send(Msg{Kind: KindHand, ID: 2, Addr: "x"}, fd, fd)
	send(Msg{Kind: KindConn, ID: 3, Addr: "x"})
	send(Msg{Kind: KindHand, ID: 4, Addr: "x"}, fd, fd, fd, fd, fd, fd)
	unix.Sendmsg(afd, []byte("junk"), unix.UnixRights(fd), nil, 0)
	send(Msg{Kind: KindDone, ID: 6})
	for i, want := range []string{"done message with 1 descriptors, want none", "hand message with 2 descriptors, want 1",
		"conn message with 0 descriptors, want 1", "more than 4 descriptors", "shorter than its 13-byte header"} {
		m, err := b.Recv()
		if err == nil || !strings.Contains(err.Error(), want) || m.Fd != -1 {
			t.Errorf("message %d: Recv = %+v, %v; want an error containing %q", i+1, m, err, want)
		}
	}
	if m, err := b.Recv(); err != nil || m.ID != 6 {
		t.Fatalf("Recv after the bad ones = %+v, %v", m, err)
	}
}

func TestSendRefuses(t *testing.T) {
	a, b := pair(t)
	defer a.Close()
	defer b.Close()
	for _, m := range []Msg{{Kind: KindHand, ID: 1, Addr: "x", Fd: -1}, {Kind: KindAck, ID: 1, Fd: 0}} {
		if err := a.Send(m); err == nil {
			t.Errorf("Send(%+v) succeeded", m)
		}
	}
}

func TestNewConnRefuses(t *testing.T) {
	checkFds(t)
	_, server := tcpPair(t)
	dup, err := unix.Dup(tcpFd(t, server))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewConn(dup, "tcp"); err == nil || !strings.Contains(err.Error(), "want a unix SOCK_SEQPACKET socket") {
		t.Fatalf("NewConn(a TCP socket) = %v", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	rfd, _ := unix.Dup(int(r.Fd()))
	r.Close()
	if _, err := NewConn(rfd, "pipe"); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("NewConn(a pipe) = %v", err)
	}
}

func TestCheckConn(t *testing.T) {
	checkFds(t)
	client, server := tcpPair(t)
	if err := CheckConn(tcpFd(t, server)); err != nil {
		t.Errorf("accepted TCP connection: %v", err)
	}
	if err := CheckConn(tcpFd(t, client)); err != nil {
		t.Errorf("dialled TCP connection: %v", err)
	}
	us, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(us[0])
	defer unix.Close(us[1])
	if err := CheckConn(us[0]); err != nil {
		t.Errorf("unix stream pair: %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	lrc, _ := l.(*net.TCPListener).SyscallConn()
	lfd := -1
	lrc.Control(func(s uintptr) { lfd = int(s) })
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	urc, _ := udp.(*net.UDPConn).SyscallConn()
	ufd := -1
	urc.Control(func(s uintptr) { ufd = int(s) })
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	unconnected, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(unconnected)
	r, w, _ := os.Pipe()
	defer r.Close()
	defer w.Close()
	for _, tc := range []struct {
		name string
		fd   int
		want string
	}{
		{"listener", lfd, "listening socket"},
		{"udp", ufd, "want a stream"},
		{"seqpacket", sp[0], "want a stream"},
		{"unconnected", unconnected, "not connected"},
		{"pipe", int(r.Fd()), "not a socket"},
		{"closed", 1 << 20, "not a socket"},
	} {
		if err := CheckConn(tc.fd); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: CheckConn = %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

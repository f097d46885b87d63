package acceptq

import (
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/handoff-dev/handoff/listener"
)

// TestSample: the kernel's queue of TCP and unix listening sockets, before and after
// connections wait in it.
func TestSample(t *testing.T) {
	for _, addr := range []string{"tcp://127.0.0.1:0", "unix://" + filepath.Join(t.TempDir(), "s")} {
		a, err := listener.ParseAddr(addr)
		if err != nil {
			t.Fatal(err)
		}
		sock, err := listener.Listen(a)
		if err != nil {
			t.Fatal(err)
		}
		defer sock.Close()
		q, err := Sample(sock)
		if err != nil || !q.Known || q.Len != 0 || q.Max == 0 {
			t.Errorf("%s: %+v, %v; want a known empty queue with a backlog", addr, q, err)
		}
		for range 2 {
			c, err := net.Dial(sock.Addr().Network(), sock.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
		}
		// A TCP connection enters the queue when the server's side has taken the client's last
		// ACK, which may come a moment after the client's connect has returned.
		for {
			q, err := Sample(sock)
			if err == nil && q.Known && q.Len == 2 {
				break
			}
			if d, ok := t.Deadline(); (ok && time.Until(d) < time.Second) || err != nil || q.Len > 2 {
				t.Fatalf("%s with 2 connections waiting: %+v, %v", addr, q, err)
			}
			time.Sleep(time.Millisecond)
		}
		sock.Close()
		if q, err := Sample(sock); err == nil || q.Known {
			t.Errorf("%s closed: %+v, %v; want an error", addr, q, err)
		}
	}
}

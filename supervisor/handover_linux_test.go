package supervisor_test

import (
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/handoff-dev/handoff/internal/connpass"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
	"github.com/handoff-dev/handoff/worker"
)

func init() {
	// handover-fds answers each connection with HANDOFF_HANDOVER_FD and
	// its descriptors above 2 that are not the Go runtime's: "fd:what"
	// (what: socket type for sockets, else the link).
	helpers["handover-fds"] = func() int {
		// Listed at the start, before the Go runtime and package listener
		// open their own.
		line := func() string {
			var fds []string
			ents, _ := os.ReadDir("/proc/self/fd")
			for _, e := range ents {
				fd, _ := strconv.Atoi(e.Name())
				l, err := os.Readlink("/proc/self/fd/" + e.Name())
				if fd < 3 || err != nil || strings.HasPrefix(l, "anon_inode:") || strings.HasPrefix(l, "/sys/fs/cgroup/") || strings.HasPrefix(l, "/proc/") {
					continue
				}
				what := l
				if strings.HasPrefix(l, "socket:") {
					typ, _ := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
					what = map[int]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "dgram", unix.SOCK_SEQPACKET: "seqpacket"}[typ]
				} else if strings.HasPrefix(l, "pipe:") {
					what = "pipe"
				}
				fds = append(fds, fmt.Sprintf("%d:%s:%s", fd, what, l))
			}
			v, ok := os.LookupEnv(worker.EnvHandoverFd)
			return fmt.Sprintf("env=%s,%t fds=%s", v, ok, strings.Join(fds, ","))
		}()
		return serveWith(false, func() string { return line })
	}
	// handover speaks the hand-over protocol with connpass. Generation 1
	// keeps the connections it accepts; on SIGTERM it hands them all and
	// exits 0 once each is Done (4 if one came back, 3 on an error).
	// Later generations serve what they are given: they read until the
	// bytes end in "meanwhile", then answer "gen G read BYTES".
	helpers["handover"] = handoverHelper
}

func handoverHelper() int {
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 3 }
	id, _ := worker.Self()
	fd, err := strconv.Atoi(os.Getenv(worker.EnvHandoverFd))
	if err != nil {
		return fail(err)
	}
	c, err := connpass.NewConn(fd, "handover")
	if err != nil {
		return fail(err)
	}
	ls, err := listener.Inherit()
	if err != nil || len(ls) != 1 {
		return fail(fmt.Errorf("listeners %v: %v", ls, err))
	}
	addr := ls[0].Addr().String()
	if err := c.Send(connpass.Msg{Kind: connpass.KindServe, Addrs: []string{addr}, Fd: -1}); err != nil {
		return fail(err)
	}
	if err := worker.Ready(); err != nil {
		return fail(err)
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	if id.Generation > 1 {
		go func() {
			for {
				m, err := c.Recv()
				if err != nil {
					return
				}
				if m.Kind != connpass.KindConn || m.Returned {
					continue
				}
				f := os.NewFile(uintptr(m.Fd), "conn")
				conn, err := net.FileConn(f)
				f.Close()
				c.Send(connpass.Msg{Kind: connpass.KindAck, ID: m.ID, OK: err == nil, Fd: -1})
				if err != nil {
					continue
				}
				go func() {
					defer conn.Close()
					var got []byte
					buf := make([]byte, 64)
					for !strings.HasSuffix(string(got), "meanwhile") {
						n, err := conn.Read(buf)
						if err != nil {
							return
						}
						got = append(got, buf[:n]...)
					}
					fmt.Fprintf(conn, "gen %d read %s\n", id.Generation, got)
				}()
			}
		}()
		<-term
		return 0
	}
	conns := make(chan net.Conn, 16)
	go func() {
		for {
			conn, err := ls[0].Accept()
			if err != nil {
				return
			}
			conns <- conn
		}
	}()
	<-term
	ids := map[uint64]bool{}
	for n := uint64(1); ; n++ {
		var conn net.Conn
		select {
		case conn = <-conns:
		default:
		}
		if conn == nil {
			break
		}
		rc, err := conn.(*net.TCPConn).SyscallConn()
		if err != nil {
			return fail(err)
		}
		var serr error
		rc.Control(func(fd uintptr) {
			serr = c.Send(connpass.Msg{Kind: connpass.KindHand, ID: n, Addr: addr, Fd: int(fd)})
		})
		if serr != nil {
			return fail(serr)
		}
		conn.Close()
		ids[n] = true
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	for len(ids) > 0 {
		m, err := c.Recv()
		if err != nil {
			return fail(err)
		}
		switch {
		case m.Kind == connpass.KindDone && ids[m.ID]:
			delete(ids, m.ID)
		case m.Kind == connpass.KindConn && m.Returned:
			fmt.Fprintln(os.Stderr, "helper: connection returned")
			return 4
		}
	}
	return 0
}

// TestHandoverDescriptor: a worker sees one SOCK_SEQPACKET unix socket,
// right after the liveness pipe, named by HANDOFF_HANDOVER_FD, and
// nothing else more; with WithHandover(false), neither.
func TestHandoverDescriptor(t *testing.T) {
	for _, tc := range []struct {
		on   bool
		want string
	}{
		{true, "env=5,true fds=3:stream,4:pipe,5:seqpacket"},
		{false, "env=,false fds=3:stream,4:pipe"},
	} {
		t.Run(fmt.Sprint(tc.on), func(t *testing.T) {
			before := fdCount(t)
			t.Cleanup(func() {
				if after := fdCount(t); after != before {
					t.Errorf("%d descriptors open after the test, %d before", after, before)
				}
			})
			ctx := deadline(t)
			f := newFixture(t, "handover-fds", nil, supervisor.WithHandover(tc.on))
			f.run(ctx)
			f.waitReady(ctx)
			got := f.ask()
			// Less what the test process itself inherited (go test's
			// runner may leave descriptors open to its children).
			env, fds, _ := strings.Cut(got, " fds=")
			var kept []string
			for _, e := range strings.Split(fds, ",") {
				parts := strings.SplitN(e, ":", 3)
				if l, err := os.Readlink("/proc/self/fd/" + parts[0]); err == nil && l == parts[2] {
					continue // the test process's own, inherited
				}
				kept = append(kept, parts[0]+":"+parts[1])
			}
			slices.Sort(kept)
			if got := env + " fds=" + strings.Join(kept, ","); got != tc.want {
				t.Errorf("the worker says %q, want %q", got, tc.want)
			}
		})
	}
}

// TestHandoverRoutes: a worker of generation 1, retired by a roll, hands
// its client's connection over; it gets Done, and the worker of
// generation 2 serves the connection: the bytes the client wrote before
// and during the hand-over, and its answer reaches the client, which
// never reconnected.
func TestHandoverRoutes(t *testing.T) {
	before := fdCount(t)
	t.Cleanup(func() {
		if after := fdCount(t); after != before {
			t.Errorf("%d descriptors open after the test, %d before", after, before)
		}
	})
	ctx := deadline(t)
	f := newFixture(t, "handover", nil, supervisor.WithHandover(true), supervisor.WithAcceptWindow(100*time.Millisecond),
		supervisor.WithReadiness(supervisor.ReadyOnNotify()))
	exits := make(chan supervisor.ExitEvent, 8)
	f.extra.AfterExit = func(e supervisor.ExitEvent) { exits <- e }
	f.run(ctx)
	f.waitReady(ctx)
	client, err := net.Dial("tcp", f.sock.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.Write([]byte("before,")); err != nil {
		t.Fatal(err)
	}
	if err := f.s.Roll(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write([]byte("meanwhile")); err != nil {
		t.Fatal(err)
	}
	if e := recv(ctx, t, exits, "generation 1's exit"); e.Worker.Generation != 1 || e.Status.Code != 0 {
		t.Fatalf("generation %d exited %v; want generation 1 to exit 0, Done received", e.Worker.Generation, e.Status)
	}
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := io.ReadAll(client)
	if want := "gen 2 read before,meanwhile\n"; string(line) != want {
		t.Fatalf("the client read %q (%v), want %q", line, err, want)
	}
	if h := f.s.Stats().Handover; h.Handed != 1 || h.InFlight != 0 {
		t.Errorf("stats: %+v, want 1 handed", h)
	}
}

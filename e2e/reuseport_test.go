//go:build linux

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestReusePortZeroDowntime: with -reuseport, 32 raw keep-alive clients
// that never retry fail no request across 10 rolls and 2 upgrades in
// place, with hand-over and without, and every slot keeps its socket
// throughout: each worker's fd 3 is its slot's socket (by inode), the same
// for the slot's replacements and after the upgrades, held by the
// supervisor, one per slot.
func TestReusePortZeroDowntime(t *testing.T) {
	for _, handover := range []bool{true, false} {
		t.Run(fmt.Sprintf("handover=%t", handover), func(t *testing.T) { reusePortZeroDowntime(t, handover) })
	}
}

func reusePortZeroDowntime(t *testing.T, handover bool) {
	const workers, clients, busy = 3, 32, 24
	sup := startExample(t, "-listen", "127.0.0.1:0", "-workers", strconv.Itoa(workers), "-reuseport",
		fmt.Sprintf("-handover=%t", handover))
	slotPid := map[int]int{} // slot → pid of its newest worker
	started := func(lines []logLine) {
		for _, ll := range lines {
			if ll.Msg == "worker started" {
				slotPid[ll.Worker] = ll.Pid
			}
		}
	}
	for range workers {
		started(sup.until("worker ready", nil))
	}
	first := slotSockets(t, sup.pid, slotPid)
	if len(first) != workers {
		t.Fatalf("sockets by slot %v, want %d", first, workers)
	}
	fds := fdCount(t, sup.pid)
	l := startRawLoad(t, sup.addr, clients, busy)
	l.waitRequests(t, 2*clients)

	check := func(when string) {
		t.Helper()
		if now := slotSockets(t, sup.pid, slotPid); !maps.Equal(now, first) {
			t.Fatalf("%s: sockets by slot %v, want %v", when, now, first)
		}
	}
	retired := 0
	for gen := uint64(2); gen <= 11; gen++ {
		sup.signal(syscall.SIGHUP)
		lines := sup.until("roll complete", func(ll logLine) bool { return ll.Generation == gen })
		for _, ll := range lines {
			if ll.Msg == "roll failed; the previous generation keeps serving" {
				t.Fatalf("roll to generation %d failed: %s", gen, ll.Error)
			}
		}
		started(lines)
		retired += workers
		check(fmt.Sprintf("roll to generation %d", gen))
		l.waitRequests(t, busy)
		if gen == 5 || gen == 8 {
			sup.signal(syscall.SIGUSR2)
			sup.until("supervisor upgraded in place", nil)
			check(fmt.Sprintf("upgrade after generation %d", gen))
			l.waitRequests(t, busy)
		}
	}
	// Once every retired worker is gone, the supervisor holds what it
	// held at the start.
	for sup.count("worker exited") < retired {
		sup.next("worker exited")
	}
	l.finish()
	l.mu.Lock()
	ok, fails := l.ok, l.fails
	l.mu.Unlock()
	t.Logf("10 rolls, 2 upgrades: %d requests, %d failed, %d dials", ok+len(fails), len(fails), l.dials.Load())
	if len(fails) > 0 {
		t.Errorf("%d requests failed: %q", len(fails), fails)
	}
	if n := fdCount(t, sup.pid); n != fds {
		t.Errorf("the supervisor holds %d descriptors, %d before the rolls", n, fds)
	}
	stopClean(t, sup.cmd.Process, sup.wait)
}

// slotSockets returns the inode of each slot's worker's listening socket
// (its fd 3 as it started) and checks
// that the supervisor holds each, and that no two slots share one.
func slotSockets(t *testing.T, sup int, slotPid map[int]int) map[int]uint64 {
	t.Helper()
	held := map[uint64]bool{}
	for _, link := range fdTable(t, sup) {
		if ino, ok := socketInode(link); ok {
			held[ino] = true
		}
	}
	bySlot, owner := map[int]uint64{}, map[uint64]int{}
	listening := listeningInodes(t)
	for slot, pid := range slotPid {
		// A Go worker keeps its listener on another descriptor than 3:
		// its one listening socket is the one it was given.
		var inos []uint64
		for _, link := range fdTable(t, pid) {
			if ino, ok := socketInode(link); ok && listening[ino] {
				inos = append(inos, ino)
			}
		}
		if len(inos) != 1 {
			t.Fatalf("slot %d: worker %d holds listening sockets %v, want 1", slot, pid, inos)
		}
		ino := inos[0]
		if other, dup := owner[ino]; dup {
			t.Errorf("slots %d and %d share socket %d", other, slot, ino)
		}
		if !held[ino] {
			t.Errorf("slot %d: the supervisor does not hold socket %d", slot, ino)
		}
		owner[ino], bySlot[slot] = slot, ino
	}
	return bySlot
}

// listeningInodes returns the inodes of the listening TCP sockets of the
// test's network namespace (of this thread: see newNetns).
func listeningInodes(t *testing.T) map[uint64]bool {
	t.Helper()
	inos := map[uint64]bool{}
	for _, s := range kernelSockets(t, "0A") { // TCP_LISTEN
		inos[s.ino] = true
	}
	return inos
}

// kernelSocket is a TCP socket as /proc/<thread>/net/tcp lists it.
type kernelSocket struct {
	port, remote int // local and remote port
	ino          uint64
}

// kernelSockets returns the TCP sockets in state (the kernel's hex code:
// "01" established, "0A" listening) of this thread's network namespace
// (the main thread may have been left in another, see newNetns).
func kernelSockets(t *testing.T, state string) []kernelSocket {
	t.Helper()
	var socks []kernelSocket
	for _, file := range []string{"/proc/thread-self/net/tcp", "/proc/thread-self/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 || f[3] != state {
				continue
			}
			_, port, _ := strings.Cut(f[1], ":")
			_, remote, _ := strings.Cut(f[2], ":")
			p, err1 := strconv.ParseUint(port, 16, 16)
			r, err2 := strconv.ParseUint(remote, 16, 16)
			ino, err3 := strconv.ParseUint(f[9], 10, 64)
			if err1 == nil && err2 == nil && err3 == nil && ino != 0 {
				socks = append(socks, kernelSocket{port: int(p), remote: int(r), ino: ino})
			}
		}
	}
	return socks
}

func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return ino, err == nil
}

// TestReusePortScaleDown scales a -reuseport supervisor from 4 workers to
// 1 and back, 5 times, under clients that open a connection per request
// and never retry: a removed slot's socket closes with connections in its
// queue. With net.ipv4.tcp_migrate_req=1 the kernel moves them to the
// other slots' sockets and none is lost (a SYN in the instant of the close
// may still be reset: at most one is allowed); with 0 they are reset, and
// the test reports how many. Each runs in a network namespace of its own
// (where the sysctl is set), never the host's.
func TestReusePortScaleDown(t *testing.T) {
	for _, migrate := range []int{1, 0} {
		t.Run(fmt.Sprintf("tcp_migrate_req=%d", migrate), func(t *testing.T) {
			ns := newNetns(t, migrate)
			const workers, clients, cycles = 4, 32, 10
			sup := startSupervisor(t, "/usr/bin/nsenter", nil, "--net="+ns.path, exampleBin,
				"-listen", "127.0.0.1:0", "-workers", strconv.Itoa(workers), "-reuseport")
			for range workers {
				sup.next("worker ready")
			}
			fds := fdCount(t, sup.pid)
			l := startChurn(t, ns, sup.addr, clients)
			l.waitRequests(t, 200)
			for c := 1; c <= cycles; c++ {
				for range workers - 1 {
					sup.signal(syscall.SIGTTOU)
					sup.next("scaling")
				}
				for sup.count("worker exited") < c*(workers-1) {
					sup.next("worker exited")
				}
				l.waitRequests(t, 200)
				for range workers - 1 {
					sup.signal(syscall.SIGTTIN)
					sup.next("worker ready")
				}
				l.waitRequests(t, 200)
			}
			l.finish()
			ok, fails := l.counts()
			t.Logf("tcp_migrate_req=%d: %d scale-downs from %d workers to 1: %d requests, %d failed %q",
				migrate, cycles, workers, ok+len(fails), len(fails), first(fails, 5))
			// With migration, a queued connection is never lost; a SYN
			// that meets the listener in the instant it closes is still
			// answered with a reset (the kernel moves requests and queued
			// connections, not a SYN in flight): 1 of 7,231 requests in
			// one CI run. Without migration both kinds come, 2–20 per run.
			var dials, queued []string
			for _, f := range fails {
				if strings.Contains(f, ": dial: ") {
					dials = append(dials, f)
				} else {
					queued = append(queued, f)
				}
			}
			if migrate == 1 && (len(queued) > 0 || len(dials) > 1) {
				t.Errorf("%d of %d requests failed: %d after the connection was accepted (want 0), %d at the dial (want at most 1)",
					len(fails), ok+len(fails), len(queued), len(dials))
			}
			if n := fdCount(t, sup.pid); n != fds {
				t.Errorf("the supervisor holds %d descriptors, %d before scaling", n, fds)
			}
			stopClean(t, sup.cmd.Process, sup.wait)
		})
	}
}

func first(s []string, n int) []string { return s[:min(n, len(s))] }

// netns is a network namespace of the test's own, with loopback up.
type netns struct {
	fd   int    // holds it open
	path string // for nsenter --net
}

// newNetns makes a network namespace with net.ipv4.tcp_migrate_req set to
// migrate, or skips the test where that is not allowed.
func newNetns(t *testing.T, migrate int) *netns {
	t.Helper()
	type made struct {
		fd  int
		err error
	}
	c := make(chan made, 1)
	go func() {
		// Never unlocked: the thread, moved to the new namespace, ends with
		// this goroutine; if it is the main thread, which Go never ends,
		// it runs nothing else, but /proc/self/net is its namespace's from
		// then on: read /proc/thread-self/net.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			c <- made{-1, fmt.Errorf("unshare CLONE_NEWNET: %w", err)}
			return
		}
		if err := loopbackUp(); err != nil {
			c <- made{-1, err}
			return
		}
		// /proc/sys/net is the opener's namespace's.
		if err := os.WriteFile("/proc/sys/net/ipv4/tcp_migrate_req", []byte(strconv.Itoa(migrate)), 0); err != nil {
			c <- made{-1, err}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		c <- made{fd, err}
	}()
	m := <-c
	if m.err != nil {
		t.Skipf("no network namespace of the test's own: %v", m.err)
	}
	t.Cleanup(func() { unix.Close(m.fd) })
	return &netns{fd: m.fd, path: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), m.fd)}
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// churn is a set of clients that each open a connection per request, in
// the network namespace ns, and never retry.
type churn struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu    sync.Mutex
	ok    int
	fails []string
	more  *sync.Cond
}

func startChurn(t *testing.T, ns *netns, addr string, clients int) *churn {
	t.Helper()
	l := &churn{stop: make(chan struct{})}
	l.more = sync.NewCond(&l.mu)
	for i := range clients {
		l.wg.Go(func() { l.client(ns, addr, i) })
	}
	t.Cleanup(l.finish)
	return l
}

func (l *churn) client(ns *netns, addr string, i int) {
	// The sockets are made in the thread's namespace; the thread is
	// never given back to other goroutines.
	runtime.LockOSThread()
	if err := unix.Setns(ns.fd, unix.CLONE_NEWNET); err != nil {
		l.record(fmt.Errorf("client %d: setns: %w", i, err))
		return
	}
	rng := rand.New(rand.NewPCG(uint64(i), 21))
	for n := 0; ; n++ {
		l.record(l.request(addr, i, n))
		pause := time.NewTimer(time.Duration(rng.Int64N(int64(2 * time.Millisecond))))
		select {
		case <-l.stop:
			pause.Stop()
			return
		case <-pause.C:
		}
	}
}

func (l *churn) request(addr string, i, n int) error {
	c, err := net.DialTimeout("tcp", addr, 15*time.Second)
	if err != nil {
		return fmt.Errorf("client %d request %d: dial: %w", i, n, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := fmt.Fprintf(c, "GET /?client=%d&n=%d HTTP/1.1\r\nHost: handoff.test\r\nConnection: close\r\n\r\n", i, n); err != nil {
		return fmt.Errorf("client %d request %d: %w", i, n, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return fmt.Errorf("client %d request %d: %w", i, n, err)
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		return fmt.Errorf("client %d request %d: %w", i, n, err)
	}
	return nil
}

func (l *churn) record(err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.fails = append(l.fails, err.Error())
		return
	}
	l.ok++
	l.more.Broadcast()
}

func (l *churn) counts() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, l.fails
}

// waitRequests waits until n more requests have succeeded.
func (l *churn) waitRequests(t *testing.T, n int) {
	t.Helper()
	var want int
	waitCond(t, l.more, func() { want = l.ok + n }, func() bool { return l.ok >= want }, func() string {
		return fmt.Sprintf("load stalled: %d successes, %d failures %q", l.ok, len(l.fails), first(l.fails, 5))
	})
}

func (l *churn) finish() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

package supervisor_test

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/handoff-dev/handoff/supervisor"
)

// TestReusePortSlots: with WithReusePort, each slot's worker gets a socket
// of its own as fd 3 (the TCP address of WithListen, bound per slot on one
// port), and its replacement in a roll gets the same one; the socket of
// WithSockets (fd 4) stays shared. Scaling up binds new slots' sockets,
// scaling down closes the removed slots'; nothing is left open after Run.
func TestReusePortSlots(t *testing.T) {
	ctx := deadline(t)
	f := newFixture(t, "serve", nil, supervisor.WithListen("web=tcp://127.0.0.1:0"),
		supervisor.WithReusePort(true), supervisor.WithWorkers(3), supervisor.WithAcceptWindow(0))
	gone := make(chan supervisor.ExitEvent, 64)
	f.extra.AfterExit = func(e supervisor.ExitEvent) { gone <- e }
	fds := fdCount(t)
	f.run(ctx)
	f.waitServing(ctx, 3)
	shared := sockInode(t, os.Getpid(), sockFd(t, f))
	addr := f.s.Stats().Sockets[0].Addr

	// slots returns each serving worker's own listening socket by slot,
	// and checks that it holds the shared one too, and its names. The
	// sockets are told apart by inode, not by descriptor number: the
	// worker's listener.Inherit moves them (net.FileListener dups each,
	// then closes the one inherited), and a worker ready on start may be
	// in the middle of it.
	slots := func() map[int]uint64 {
		t.Helper()
		bySlot := map[int]uint64{}
		for _, w := range f.s.Stats().Workers {
			held := listeningHeld(t, w.Pid)
			if !held[shared] {
				t.Errorf("worker %d (slot %d) does not hold the shared socket %d (it holds %v)", w.Pid, w.Slot, shared, held)
			}
			delete(held, shared)
			if len(held) != 1 {
				t.Errorf("worker %d (slot %d) holds listening sockets %v beside the shared one, want one", w.Pid, w.Slot, held)
			}
			for ino := range held {
				bySlot[w.Slot] = ino
			}
			if names := environ(t, w.Pid)["LISTEN_FDNAMES"]; names != "web:test" {
				t.Errorf("worker %d: LISTEN_FDNAMES=%q, want web:test", w.Pid, names)
			}
		}
		return bySlot
	}
	first := slots()
	if len(first) != 3 {
		t.Fatalf("workers by slot %v, want 3", first)
	}
	checkOwn(t, first, addr)
	// The kernel spreads connections over the three sockets.
	pids := map[string]bool{}
	for i := 0; len(pids) < 3 && i < 300; i++ {
		pids[strings.Fields(f.askAt(addr))[0]] = true
	}
	if len(pids) != 3 {
		t.Errorf("300 connections reached %d workers, want 3", len(pids))
	}

	for range 2 {
		if err := f.s.Roll(ctx); err != nil {
			t.Fatal(err)
		}
		if after := slots(); !maps.Equal(after, first) {
			t.Fatalf("sockets by slot after a roll %v, want %v", after, first)
		}
	}

	if err := f.s.Scale(ctx, 5); err != nil {
		t.Fatal(err)
	}
	f.waitServing(ctx, 5)
	up := slots()
	for i := range 3 {
		if up[i] != first[i] {
			t.Errorf("slot %d: socket %d after scaling up, want %d", i, up[i], first[i])
		}
	}
	checkOwn(t, up, addr)

	if err := f.s.Scale(ctx, 2); err != nil {
		t.Fatal(err)
	}
	held := supervisorInodes(t)
	for i := 2; i < 5; i++ {
		if held[up[i]] {
			t.Errorf("slot %d removed: the supervisor still holds its socket %d", i, up[i])
		}
	}
	for i := range 2 {
		if !held[up[i]] {
			t.Errorf("slot %d: the supervisor does not hold its socket %d", i, up[i])
		}
	}
	// Once the removed slots' workers are gone (a connection queued on
	// their sockets meanwhile is reset as they exit, with
	// tcp_migrate_req 0), every connection reaches the two left.
	for len(f.s.Stats().Retiring) > 0 {
		recv(ctx, t, gone, "a retired worker's exit")
	}
	for range 20 {
		f.askAt(addr)
	}

	if err := f.s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := fdCount(t); n != fds {
		t.Errorf("%d descriptors open after Run, %d before", n, fds)
	}
}

// checkOwn checks that each slot's socket is its own, listening on addr's
// port, and held by the supervisor.
func checkOwn(t *testing.T, bySlot map[int]uint64, addr string) {
	t.Helper()
	_, port, _ := net.SplitHostPort(addr)
	held := supervisorInodes(t)
	seen := map[uint64]int{}
	for slot, ino := range bySlot {
		if other, dup := seen[ino]; dup {
			t.Errorf("slots %d and %d share socket %d", other, slot, ino)
		}
		seen[ino] = slot
		if !held[ino] {
			t.Errorf("slot %d: the supervisor does not hold its socket %d", slot, ino)
		}
		if p := listenPort(t, ino); strconv.Itoa(p) != port {
			t.Errorf("slot %d: socket %d listens on port %d, want %s", slot, ino, p, port)
		}
	}
}

func sockFd(t *testing.T, f *fixture) int {
	t.Helper()
	var fd int
	if err := f.sock.Control(func(u uintptr) { fd = int(u) }); err != nil {
		t.Fatal(err)
	}
	return fd
}

// sockInode returns the inode of the socket on pid's fd.
func sockInode(t *testing.T, pid, fd int) uint64 {
	t.Helper()
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", pid, fd))
	if err != nil {
		t.Fatal(err)
	}
	ino, ok := socketInode(link)
	if !ok {
		t.Fatalf("pid %d fd %d is %q, not a socket", pid, fd, link)
	}
	return ino
}

// socketInode returns the inode a descriptor's link "socket:[N]" names.
func socketInode(link string) (uint64, bool) {
	s, ok := strings.CutPrefix(link, "socket:[")
	if !ok {
		return 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(s, "]"), 10, 64)
	return ino, err == nil
}

// heldSockets returns the inodes of the sockets process pid holds
// ("self": this one), whatever their descriptor numbers.
func heldSockets(t *testing.T, pid string) map[uint64]bool {
	t.Helper()
	dir := "/proc/" + pid + "/fd"
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	inos := map[uint64]bool{}
	for _, e := range ents {
		link, _ := os.Readlink(dir + "/" + e.Name())
		if ino, ok := socketInode(link); ok {
			inos[ino] = true
		}
	}
	return inos
}

// supervisorInodes returns the inodes of the sockets this process holds.
func supervisorInodes(t *testing.T) map[uint64]bool { return heldSockets(t, "self") }

// listeningHeld returns the inodes of the listening TCP sockets process
// pid holds, whatever their descriptor numbers.
func listeningHeld(t *testing.T, pid int) map[uint64]bool {
	t.Helper()
	ports := listeningPorts(t)
	held := heldSockets(t, strconv.Itoa(pid))
	for ino := range held {
		if _, ok := ports[ino]; !ok {
			delete(held, ino)
		}
	}
	return held
}

// listenPort returns the port of the listening TCP socket with inode ino.
func listenPort(t *testing.T, ino uint64) int {
	t.Helper()
	p, ok := listeningPorts(t)[ino]
	if !ok {
		t.Errorf("socket %d is not a listening TCP socket", ino)
	}
	return p
}

// listeningPorts returns the port of every listening TCP socket of this
// network namespace, by inode.
func listeningPorts(t *testing.T) map[uint64]int {
	t.Helper()
	ports := map[uint64]int{}
	for _, file := range []string{"/proc/self/net/tcp", "/proc/self/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fl := strings.Fields(line)
			if len(fl) < 10 || fl[3] != "0A" { // TCP_LISTEN
				continue
			}
			_, port, _ := strings.Cut(fl[1], ":")
			p, err1 := strconv.ParseUint(port, 16, 16)
			ino, err2 := strconv.ParseUint(fl[9], 10, 64)
			if err1 == nil && err2 == nil {
				ports[ino] = int(p)
			}
		}
	}
	return ports
}

func environ(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			env[k] = v
		}
	}
	return env
}

// waitServing waits until n workers serve, ready.
func (f *fixture) waitServing(ctx context.Context, n int) {
	f.t.Helper()
	for {
		ready := 0
		for _, w := range f.s.Stats().Workers {
			if w.State == supervisor.Ready {
				ready++
			}
		}
		if ready == n {
			return
		}
		f.waitReady(ctx)
	}
}

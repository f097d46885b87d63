package supervisor

import (
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
)

// WithReusePort gives each worker slot a listening socket of its own for
// every TCP address of WithListen (default off): the supervisor binds the
// address once per slot with SO_REUSEPORT, keeps every socket, and passes
// slot i's to the worker of slot i, and to its replacements (a roll's
// canary and surge workers, a recycled or restarted worker), at the same
// fd position and with the same LISTEN_FDNAMES name as a shared socket: a
// worker cannot tell the difference. The kernel spreads new connections
// over the sockets by a hash of the client's address and port; each slot's
// accept queue outlives its workers. With port 0 the first slot's socket
// picks the port and the others bind it.
//
// What it buys: workers do not contend for one accept queue (measured on 2
// cores with 2 workers and keep-alive clients, bench/results: throughput
// within the shared socket's run-to-run swing, ×0.89 and ×1.08 of it in two
// runs of one commit; where many workers accept many
// new connections it is the kernel's known remedy, not measured here).
// What it costs: the kernel's choice ignores how busy a worker is, so one
// slow or stalled worker keeps its share of new connections (they wait in
// its queue, while with a shared socket an idle worker would take them),
// and a slot that has no worker for a while (a start failure's backoff)
// holds its share until the next one starts. Use it for many workers of
// one fast, uniform service; keep the shared socket for long or uneven
// requests, or few workers.
//
// Unix sockets and the sockets of WithSockets (systemd's) cannot be
// multiplied: they stay shared by every worker, as without this option.
//
// Scale adds slots with sockets of their own and closes a removed slot's
// socket when its workers are told to stop (their own copies close as they
// begin to drain). The connections still queued on it are reset, unless
// net.ipv4.tcp_migrate_req is 1 (Linux 5.14 or later), which moves them to
// the other slots' sockets: the supervisor reads it at start and logs when
// it is 0; it never sets it. An upgrade in place hands every slot's socket
// on to the new program, which keeps the sockets it inherits (the mode
// included) over its own options.
func WithReusePort(on bool) Option { return optionFunc(func(o *options) { o.reusePort = on }) }

// slotSockets are the sockets of WithReusePort. Only the run goroutine
// touches them.
type slotSockets struct {
	// bind is, for each position of table.socks, the address a slot binds
	// for its own socket there, with the port the first socket got; a zero
	// Addr for a shared socket. Empty when every socket is shared.
	bind []listener.Addr
	// bySlot[i] is slot i's sockets in fd order, or nil when slot i uses
	// table.socks: slot 0 always (its sockets are table.socks and stay
	// open whatever the scale, so that connections queue while no worker
	// runs), and a slot whose bind failed.
	bySlot [][]*listener.Socket
}

// perSlot reports whether some socket is bound per slot.
func (ss *slotSockets) perSlot() bool {
	return slices.ContainsFunc(ss.bind, func(a listener.Addr) bool { return a.Network != "" })
}

// socksFor returns the sockets a worker of slot i gets, in fd order.
func (t *table) socksFor(i int) []*listener.Socket {
	if i < len(t.ports.bySlot) && t.ports.bySlot[i] != nil {
		return t.ports.bySlot[i]
	}
	return t.socks
}

// listenOptions returns how to bind a, and whether it is bound per slot.
func (t *table) listenOptions(a listener.Addr) ([]listener.Option, bool) {
	if !t.o.reusePort || a.Network == "unix" {
		return nil, false
	}
	return []listener.Option{listener.WithReusePort()}, true
}

// boundAddr is a with the port sock got: what the other slots bind.
func boundAddr(a listener.Addr, sock *listener.Socket) listener.Addr {
	ta, ok := sock.Addr().(*net.TCPAddr)
	if !ok {
		return a
	}
	host, _, err := net.SplitHostPort(a.Address)
	if err != nil {
		return a
	}
	a.Address = net.JoinHostPort(host, strconv.Itoa(ta.Port))
	return a
}

// bindSlots gives slots from to n-1 sockets of their own. A slot whose
// bind fails uses slot 0's, with a warning: it serves, on a shared queue.
func (t *table) bindSlots(from, n int) {
	if !t.ports.perSlot() {
		return
	}
	for len(t.ports.bySlot) < n {
		t.ports.bySlot = append(t.ports.bySlot, nil)
	}
	for i := max(from, 1); i < n; i++ {
		if t.ports.bySlot[i] != nil {
			continue
		}
		socks, err := t.bindSlot()
		if err != nil {
			t.log.Warn("binding a socket for a slot: it shares the first slot's", zap.Int("worker", i), zap.Error(err))
			continue
		}
		t.ports.bySlot[i] = socks
	}
}

// bindSlot binds one slot's sockets: its own where the position is per
// slot, the shared one elsewhere.
func (t *table) bindSlot() ([]*listener.Socket, error) {
	socks := slices.Clone(t.socks)
	for j, a := range t.ports.bind {
		if a.Network == "" {
			continue
		}
		sock, err := listener.Listen(a, listener.WithReusePort())
		if err != nil {
			t.closeOwn(socks)
			return nil, fmt.Errorf("supervisor: %w", err)
		}
		socks[j] = sock
	}
	return socks, nil
}

// closeOwn closes the sockets of a slot's set that are its own.
func (t *table) closeOwn(socks []*listener.Socket) {
	for j, sock := range socks {
		if sock != t.socks[j] {
			sock.Close()
		}
	}
}

// closeSlots closes the sockets of slots n and above, removed: their
// workers have been told to stop, and the copies they hold close as they
// drain.
func (t *table) closeSlots(n int) {
	keep := max(n, 1) // slot 0's are table.socks
	if len(t.ports.bySlot) <= keep {
		return
	}
	for _, socks := range t.ports.bySlot[keep:] {
		if socks != nil {
			t.closeOwn(socks)
		}
	}
	t.ports.bySlot = t.ports.bySlot[:keep]
}

// logMigrate says, once at start, what scaling down does to the
// connections queued on a removed slot's socket.
func (t *table) logMigrate() {
	if !t.ports.perSlot() {
		if t.o.reusePort {
			t.log.Info("reuse port: no TCP address of the supervisor's own to bind per slot; every socket is shared")
		}
		return
	}
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_migrate_req")
	if err != nil {
		t.log.Info("reuse port: net.ipv4.tcp_migrate_req is not available: scaling down may reset the connections queued on a removed slot's socket",
			zap.Error(err))
		return
	}
	if v := strings.TrimSpace(string(b)); v == "0" {
		t.log.Info("reuse port: net.ipv4.tcp_migrate_req is 0: scaling down may reset the connections queued on a removed slot's socket (sysctl -w net.ipv4.tcp_migrate_req=1 moves them to the other slots)")
	}
}

// slotSocketFds returns each slot's own sockets for the upgrade state
// (upgradeState.SlotSockets).
func (t *table) slotSocketFds() ([][]int, error) {
	if !t.ports.perSlot() {
		return nil, nil
	}
	fds := make([][]int, len(t.ports.bySlot))
	for i, socks := range t.ports.bySlot {
		if socks == nil {
			continue
		}
		for j, a := range t.ports.bind {
			if a.Network == "" {
				continue
			}
			if err := socks[j].Control(func(fd uintptr) { fds[i] = append(fds[i], int(fd)) }); err != nil {
				return nil, err
			}
		}
	}
	return fds, nil
}

// resumeSlotSockets takes over the slots' own sockets an upgrade handed
// on, after table.socks. The inherited mode wins over this program's
// WithReusePort: the sockets are bound already.
func (t *table) resumeSlotSockets(st *upgradeState) error {
	t.ports.bind = make([]listener.Addr, len(t.socks))
	own := 0
	for j, s := range st.Sockets {
		if s.Bind == "" {
			continue
		}
		a, err := listener.ParseAddr(s.Bind)
		if err != nil {
			return fmt.Errorf("supervisor: inherited socket %q: %w", s.Name, err)
		}
		t.ports.bind[j] = a
		own++
	}
	switch {
	case t.o.reusePort && own == 0 && len(t.s.addrs) > 0:
		t.log.Info("reuse port: the inherited sockets are shared, and stay so until the supervisor is restarted")
	case !t.o.reusePort && own > 0:
		t.log.Info("reuse port: the inherited sockets are per slot, and stay so until the supervisor is restarted")
	}
	t.ports.bySlot = make([][]*listener.Socket, len(st.SlotSockets))
	for i, fds := range st.SlotSockets {
		if len(fds) == 0 {
			continue
		}
		if i == 0 || len(fds) != own {
			return fmt.Errorf("supervisor: upgrade state: slot %d has %d sockets of its own, want %d", i, len(fds), own)
		}
		socks := slices.Clone(t.socks)
		t.ports.bySlot[i] = socks
		k := 0
		for j, a := range t.ports.bind {
			if a.Network == "" {
				continue
			}
			sock, err := listener.AdoptFd(fds[k], t.socks[j].Name())
			if err != nil {
				return fmt.Errorf("supervisor: inherited socket of slot %d: %w", i, err)
			}
			socks[j] = sock
			k++
		}
	}
	return nil
}

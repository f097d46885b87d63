package listener

import (
	"fmt"
	"net"
	"sync"
)

// Socket is a listening socket owned by the supervisor. It is kept as a raw descriptor in
// non-blocking, close-on-exec mode, and never wrapped in an [os.File] whose Fd method is called:
// that would switch the open file description, shared with every worker, to blocking mode.
//
// A Socket is safe for concurrent use.
type Socket struct {
	name string
	addr net.Addr

	mu    sync.Mutex
	fd    int
	users int  // Control calls running
	open  bool // set by the constructors; Close clears it, and the fd is closed once users is 0
}

type options struct {
	backlog    int // with setBacklog; otherwise package net's default, the kernel's limit
	setBacklog bool
	reusePort  bool
}

// Option configures [Listen].
type Option interface{ apply(*options) }

type backlogOption int

func (n backlogOption) apply(o *options) { o.backlog, o.setBacklog = int(n), true }

// WithBacklog sets the listen(2) backlog, the number of connections the kernel queues for
// accept. The default is package net's, net.core.somaxconn; the kernel caps larger values at it.
// n must be at least 1.
func WithBacklog(n int) Option { return backlogOption(n) }

type reusePortOption struct{}

func (reusePortOption) apply(o *options) { o.reusePort = true }

// WithReusePort sets SO_REUSEPORT, so that several sockets may bind the same TCP address and the
// kernel spreads connections among them. It is an error for a unix socket.
func WithReusePort() Option { return reusePortOption{} }

// Listen binds a and listens on it.
//
// For a unix socket with a filesystem path: if a socket file is already there, Listen connects
// to it; if that is refused, the file is left over from a dead process and is replaced, and if a
// process answers (it sees a connection open and close), Listen fails with [ErrInUse]. Any other
// kind of file at the path is an error and is never removed. Listen creates the file; Close
// leaves it, so that an upgraded supervisor keeps serving on it: [Unlink] removes it at the end.
//
// A port or abstract name already bound gives an error wrapping [ErrInUse] and EADDRINUSE.
func Listen(a Addr, opts ...Option) (*Socket, error) {
	var o options
	for _, opt := range opts {
		if opt != nil {
			opt.apply(&o)
		}
	}
	if err := a.validate(); err != nil {
		return nil, fmt.Errorf("listener: listen %s: %w", quote(a.String()), err)
	}
	if o.setBacklog && o.backlog < 1 {
		return nil, fmt.Errorf("listener: listen %s: backlog %d: must be at least 1", a, o.backlog)
	}
	if o.reusePort && a.Network == "unix" {
		return nil, fmt.Errorf("listener: listen %s: SO_REUSEPORT applies to TCP only", a)
	}
	return listen(a, o)
}

// Unlink removes the file of a unix socket bound at a's path once no process listens on it any
// more: what a supervisor does with the sockets it bound, at its final stop, after every copy
// it and its workers held is closed. A socket a process still listens on (a worker that
// outlived the stop, a new owner), any other kind of file, and abstract or TCP addresses are
// left alone, without an error.
func Unlink(a Addr) error {
	if a.Network != "unix" || a.Address == "" || a.Address[0] == '@' {
		return nil
	}
	return unlink(a)
}

// Adopt returns the sockets this process inherited through systemd socket activation
// (LISTEN_FDS, LISTEN_FDNAMES, and LISTEN_PID equal to this process's pid), in order and named,
// for a supervisor started by systemd. It makes them close-on-exec and non-blocking and removes
// the three variables from the environment, whatever the outcome.
//
// It returns [ErrNoListeners] when LISTEN_FDS is unset, and ErrNoListeners wrapped with the
// reason when LISTEN_PID is unset or another process's. A malformed variable gives an error
// wrapping [ErrBadEnv] that names it. Every descriptor must be a listening socket, or Adopt
// fails naming the descriptor; on failure no descriptor is closed.
func Adopt() ([]*Socket, error) { return adopt() }

// AdoptFd takes ownership of fd, which must be a listening socket, e.g. one inherited across an
// in-place re-exec of the supervisor or passed by a parent that does not speak the systemd
// protocol. It makes fd close-on-exec and non-blocking. The name follows the rules of
// [Addr.Name]; "" becomes "unknown".
func AdoptFd(fd int, name string) (*Socket, error) {
	if err := checkName(name); err != nil {
		return nil, fmt.Errorf("listener: fd %d: %w", fd, err)
	}
	if fd < 0 {
		return nil, fmt.Errorf("listener: fd %d: negative descriptor", fd)
	}
	return fromFd(fd, nameOrDefault(name))
}

func nameOrDefault(name string) string {
	if name == "" {
		return defaultName
	}
	return name
}

// Name returns the socket's name for LISTEN_FDNAMES; "unknown" if it was given none.
func (s *Socket) Name() string { return s.name }

// Addr returns the address the socket is bound to, with the port the kernel chose for port 0.
func (s *Socket) Addr() net.Addr { return s.addr }

// Control calls f with the socket's descriptor, which stays open until f returns, even if Close
// is called meanwhile; f must not keep the descriptor. After Close, Control returns an error
// wrapping [net.ErrClosed], as it does for a nil *Socket.
func (s *Socket) Control(f func(fd uintptr)) error {
	fd, err := s.acquire()
	if err != nil {
		return err
	}
	defer s.release()
	f(fd)
	return nil
}

func (s *Socket) acquire() (uintptr, error) {
	if s == nil {
		return 0, fmt.Errorf("listener: nil socket: %w", net.ErrClosed)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return 0, fmt.Errorf("listener: socket %s (%s): %w", quote(s.name), s.addr, net.ErrClosed)
	}
	s.users++
	return uintptr(s.fd), nil
}

func (s *Socket) release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users--
	if !s.open && s.users == 0 {
		_ = closeFd(s.fd) // Close already returned; the fd was valid, so this cannot fail usefully
	}
}

// Close closes the supervisor's descriptor; workers keep theirs, and the socket stays open in
// the kernel while any of them does. Close never removes a unix socket's file: an upgraded
// supervisor, or the next owner, needs it ([Unlink] does, at the very end). If Control calls are running, the descriptor is closed when the last one returns.
// Close is idempotent.
func (s *Socket) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.open {
		return nil // closed already, or a zero Socket that never had a descriptor
	}
	s.open = false
	if s.users > 0 {
		return nil
	}
	if err := closeFd(s.fd); err != nil {
		return fmt.Errorf("listener: close %s: %w", quote(s.name), err)
	}
	return nil
}

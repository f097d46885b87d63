package reap

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"go.uber.org/zap"
)

// Errors returned by this package.
var (
	// ErrClosed is returned by Start and Adopt after Close, by Wait for a
	// process still running when its Reaper was closed, and by Signal once the
	// Reaper no longer holds the process's pidfd.
	ErrClosed = errors.New("reap: reaper closed")
)

// Option configures a [Reaper].
type Option interface{ apply(*options) }

type options struct {
	subreaper bool
	orphan    func(Status)
	log       *zap.Logger
}

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithSubreaper makes the Reaper a child subreaper that reaps every child of
// the process with wait4(-1), for PID 1 and containers. See the package
// documentation: this mode steals exit statuses from os/exec.
func WithSubreaper() Option {
	return optionFunc(func(o *options) { o.subreaper = true })
}

// WithOrphanFunc sets the function that receives the statuses of reaped
// processes that were not started or adopted through the Reaper (orphaned
// descendants re-parented to this process). It needs [WithSubreaper]. It is
// called on the Reaper's drain goroutine, with no lock held; while it runs,
// nothing is reaped, and it must not call [Reaper.Close].
func WithOrphanFunc(f func(Status)) Option {
	return optionFunc(func(o *options) { o.orphan = f })
}

// WithLogger sets the logger (default: none).
func WithLogger(l *zap.Logger) Option {
	return optionFunc(func(o *options) {
		if l != nil {
			o.log = l
		}
	})
}

// Reaper owns the waiting for its children. Its methods are safe for
// concurrent use.
type Reaper struct {
	opts options

	// mu guards procs and closing. Start and Adopt hold it from fork (or
	// pidfd_open) to registration; the subreaper drain holds it per batch
	// of wait4 calls, so a reaped pid is always either registered or an
	// orphan.
	mu      sync.Mutex
	procs   map[int]*Process
	closing bool

	wg        sync.WaitGroup
	closeOnce sync.Once
	closed    chan struct{} // closed when Close has joined every goroutine

	// Subreaper mode.
	sigs chan os.Signal
	stop chan struct{}
}

// New returns a Reaper. It fails with an error wrapping [handoff.ErrNotSupported]
// on platforms other than Linux.
func New(opts ...Option) (*Reaper, error) {
	o := options{log: zap.NewNop()}
	for i, opt := range opts {
		if opt == nil {
			return nil, fmt.Errorf("reap: option %d is nil", i)
		}
		opt.apply(&o)
	}
	if o.orphan != nil && !o.subreaper {
		return nil, errors.New("reap: WithOrphanFunc needs WithSubreaper")
	}
	r := &Reaper{
		opts:   o,
		procs:  make(map[int]*Process),
		closed: make(chan struct{}),
	}
	if err := r.init(); err != nil {
		return nil, err
	}
	return r, nil
}

// Start starts path with argv and attr and watches the child from before
// Start returns, so its exit cannot be missed.
//
// It uses [syscall.StartProcess], not [os.StartProcess]: attr.Files are raw
// descriptors, passed as they are and never touched (os would switch
// inherited sockets to blocking mode through File.Fd, and its first use forks
// a hidden child to probe for pidfd support). An empty argv means []string{path}. A nil attr is the zero
// [syscall.ProcAttr]: empty environment, no open files. The Reaper sets
// attr.Sys.PidFD on a copy of attr.Sys; the caller's value is never changed,
// and a caller-set PidFD is an error.
func (r *Reaper) Start(path string, argv []string, attr *syscall.ProcAttr) (*Process, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if path == "" {
		return nil, errors.New("reap: start: empty path")
	}
	if len(argv) == 0 {
		argv = []string{path}
	}
	var a syscall.ProcAttr
	if attr != nil {
		a = *attr
	}
	return r.start(path, argv, a)
}

// Adopt watches pid, an existing child of this process that nothing else
// waits for, such as a worker inherited across an in-place re-exec. A child
// that already exited and is still a zombie is adopted too, and its status
// delivered. Adopting a pid that is not a child of this process, or is already
// watched by this Reaper, is an error.
func (r *Reaper) Adopt(pid int) (*Process, error) {
	if err := r.check(); err != nil {
		return nil, err
	}
	if pid <= 0 {
		return nil, fmt.Errorf("reap: adopt: invalid pid %d", pid)
	}
	return r.adopt(pid)
}

// Close stops watching and joins every goroutine the Reaper started. Exits
// that happened before Close are still delivered. Processes still running are
// left alone, neither killed nor reaped: their Wait returns [ErrClosed] and
// their Done channel stays open. Close is idempotent and always returns nil.
func (r *Reaper) Close() error {
	if r.check() != nil {
		return nil
	}
	r.closeOnce.Do(func() {
		r.close()
		close(r.closed)
	})
	return nil
}

func (r *Reaper) check() error {
	if r == nil || r.closed == nil {
		return errors.New("reap: Reaper not created by New")
	}
	return nil
}

// Process is a child watched by a [Reaper].
type Process struct {
	r     *Reaper
	pid   int
	pidfd *os.File
	rc    syscall.RawConn // pidfd's, for Signal and the watcher

	done   chan struct{} // closed once status or err is set and pidfd closed
	reaped atomic.Bool   // the exit was collected (or lost): set before pidfd closes
	status Status
	err    error // the exit was lost: someone else reaped the child
}

// Pid returns the process id. It stays valid after the process was reaped,
// but may then name another process.
func (p *Process) Pid() int { return p.pid }

// Done returns a channel that is closed once the exit was collected: the
// status is then available from Status and Wait. It is also closed, with
// Status reporting false, if the child was reaped by someone else (its Wait
// returns an error wrapping ECHILD).
func (p *Process) Done() <-chan struct{} { return p.done }

// Status returns the exit status once Done is closed; false before that, or
// when the status was lost.
func (p *Process) Status() (Status, bool) {
	select {
	case <-p.done:
		return p.status, p.err == nil
	default:
		return Status{}, false
	}
}

// Wait waits for the exit status. It returns ctx's error if ctx ends first,
// and [ErrClosed] if the Reaper was closed while the process still ran.
func (p *Process) Wait(ctx context.Context) (Status, error) {
	if ctx == nil {
		return Status{}, errors.New("reap: wait: nil Context")
	}
	select {
	case <-p.done:
		return p.status, p.err
	default:
	}
	select {
	case <-p.done:
		return p.status, p.err
	case <-p.r.closed:
		select {
		case <-p.done:
			return p.status, p.err
		default:
			return Status{}, ErrClosed
		}
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// Signal sends sig to the process through its pidfd, which cannot reach a
// different process that reused the pid. It returns [os.ErrProcessDone] once
// the process has been reaped and [ErrClosed] after the Reaper was closed.
func (p *Process) Signal(sig syscall.Signal) error {
	if p.isDone() {
		return os.ErrProcessDone
	}
	return p.signal(sig)
}

func (p *Process) isDone() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/handover"
	"github.com/handoff-dev/handoff/internal/janitor"
	"github.com/handoff-dev/handoff/internal/launch"
	"github.com/handoff-dev/handoff/internal/logging"
	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/worker"
)

// Command is the program every worker runs.
type Command struct {
	// Path is the program. A name without a slash is looked up in PATH
	// when New is called.
	Path string
	// Args is the argv, starting with the program's name; empty means
	// []string{Path}.
	Args []string
	// Env is the environment; nil means the supervisor's own. Variables of
	// the socket-activation and notify protocols and handoff's own are
	// replaced by the supervisor's values.
	Env []string
	// Dir is the working directory; "" means the supervisor's.
	Dir string
}

// A Supervisor keeps a number of worker processes running on shared
// listening sockets. Create it with New and start it with Run; its other
// methods are safe to call from any goroutine.
type Supervisor struct {
	cmd   Command
	addrs []listener.Addr
	o     options
	log   *zap.Logger

	reqs    chan func(*table) // served by the run goroutine
	stopC   chan struct{}     // closed to begin a graceful stop
	killC   chan struct{}     // closed to SIGKILL whatever is left
	running chan struct{}     // closed when Run's table is up
	done    chan struct{}     // closed when Run returns

	stopOnce, killOnce sync.Once

	mu    sync.Mutex
	phase phase

	pub      atomic.Pointer[published] // the run goroutine's last snapshot, for Stats
	nPub     atomic.Int64              // snapshots published, for the tests of their pace
	draining atomic.Bool               // a stop (or its shutdown delay) has begun
	// hookThread is the OS thread of the goroutine running a hook, locked
	// to it while the hook runs; 0 when none runs (see runHook). hooked is
	// the table the hook's event is changing, for Stats from the hook.
	hookThread atomic.Int64
	hooked     *table
}

type phase int

const (
	idle phase = iota
	running
	finished
)

// New checks the command and the options and returns a Supervisor that has
// not started anything yet.
func New(cmd Command, opts ...Option) (*Supervisor, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	addrs := make([]listener.Addr, 0, len(o.addrs))
	for _, s := range o.addrs {
		a, err := listener.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("supervisor: listen address: %w", err)
		}
		addrs = append(addrs, a)
	}
	if cmd.Path == "" {
		return nil, errors.New("supervisor: command path is empty")
	}
	path, err := exec.LookPath(cmd.Path)
	if err != nil {
		return nil, fmt.Errorf("supervisor: command: %w", err)
	}
	if cmd.Dir != "" {
		if fi, err := os.Stat(cmd.Dir); err != nil {
			return nil, fmt.Errorf("supervisor: working directory: %w", err)
		} else if !fi.IsDir() {
			return nil, fmt.Errorf("supervisor: working directory %s is not a directory", cmd.Dir)
		}
	}
	cmd.Path = path
	if len(cmd.Args) == 0 {
		cmd.Args = []string{cmd.Path}
	}
	cmd.Args = slices.Clone(cmd.Args)
	cmd.Env = slices.Clone(cmd.Env)
	if o.logger == nil {
		o.logger = logging.Default()
	}
	handover.EndPreflight() // the preflight run of an upgrade ends here, once all is checked
	return &Supervisor{
		cmd:     cmd,
		addrs:   addrs,
		o:       o,
		log:     o.logger,
		reqs:    make(chan func(*table)),
		stopC:   make(chan struct{}),
		killC:   make(chan struct{}),
		running: make(chan struct{}),
		done:    make(chan struct{}),
	}, nil
}

func (o *options) validate() error {
	switch {
	case o.workers < 1:
		return fmt.Errorf("supervisor: workers must be at least 1, not %d", o.workers)
	case o.minUptime < 0:
		return fmt.Errorf("supervisor: minimum uptime %v is negative", o.minUptime)
	case o.backoffMin <= 0 || o.backoffMax < o.backoffMin:
		return fmt.Errorf("supervisor: backoff %v..%v: want 0 < min <= max", o.backoffMin, o.backoffMax)
	case validateMaxDraining(o.maxDraining) != nil:
		return validateMaxDraining(o.maxDraining)
	case o.stopTimeout < 0:
		return fmt.Errorf("supervisor: stop timeout %v is negative", o.stopTimeout)
	case o.stopSignal == 0:
		return errors.New("supervisor: stop signal is 0")
	case o.surge < 1:
		return fmt.Errorf("supervisor: surge must be at least 1, not %d", o.surge)
	case o.canary < 1:
		return fmt.Errorf("supervisor: canary must be at least 1 worker, not %d", o.canary)
	case o.probe != nil && o.probe.Check() != nil:
		return o.probe.Check()
	case o.acceptWindow < 0:
		return fmt.Errorf("supervisor: accept window %v is negative", o.acceptWindow)
	case o.readyTimeout <= 0:
		return fmt.Errorf("supervisor: ready timeout %v must be positive", o.readyTimeout)
	case o.readiness.mode == readyDelay && o.readiness.delay < 0:
		return fmt.Errorf("supervisor: readiness delay %v is negative", o.readiness.delay)
	case o.watchdog < 0 || o.watchdog > 0 && o.watchdog < time.Millisecond:
		return fmt.Errorf("supervisor: watchdog interval %v: want 0 (off) or at least 1ms", o.watchdog)
	case o.watchdogSignal == 0 || o.watchdogGrace < 0:
		return fmt.Errorf("supervisor: watchdog signal %d with grace %v", o.watchdogSignal, o.watchdogGrace)
	case o.maxLifetime < 0 || o.lifetimeJitter < 0:
		return fmt.Errorf("supervisor: lifetime %v with jitter %v: want non-negative", o.maxLifetime, o.lifetimeJitter)
	case o.shutdownDelay < 0:
		return fmt.Errorf("supervisor: shutdown delay %v is negative", o.shutdownDelay)
	case o.maxFailures < 0:
		return fmt.Errorf("supervisor: max start failures %d is negative", o.maxFailures)
	}
	if o.healthAddr != "" {
		a, err := listener.ParseAddr(o.healthAddr)
		if err != nil {
			return fmt.Errorf("supervisor: health address: %w", err)
		}
		o.healthParsed = a
	}
	if err := o.metrics.validate(); err != nil {
		return err
	}
	for i, s := range o.sockets {
		if s == nil {
			return fmt.Errorf("supervisor: socket %d is nil", i)
		}
	}
	return nil
}

// Run binds the listening addresses, starts the workers and keeps them
// running until ctx is cancelled (a graceful stop bounded by the stop
// timeout), Shutdown or Close is called. It returns once every worker has
// been reaped and everything it opened is closed; the error is nil after a
// requested stop.
func (s *Supervisor) Run(ctx context.Context) (err error) {
	s.mu.Lock()
	switch s.phase {
	case running:
		s.mu.Unlock()
		return ErrRunning
	case finished:
		s.mu.Unlock()
		return ErrClosed
	}
	s.phase = running
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.phase = finished
		s.mu.Unlock()
		close(s.done)
	}()

	t, err := s.newTable()
	if err != nil {
		return err
	}
	defer t.close()
	return t.loop(ctx) // closes s.running once it serves
}

// Running returns a channel that is closed once Run has bound its sockets
// and taken over (or resumed) its worker table: from then on Stats, Roll,
// Upgrade and Scale reach it. It stays open if Run fails before that.
func (s *Supervisor) Running() <-chan struct{} { return s.running }

// Done returns a channel that is closed when Run has returned.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Shutdown stops the supervisor gracefully: every worker gets the stop
// signal and is not replaced when it exits. Workers still alive when ctx is
// done get SIGKILL. Shutdown returns when Run has returned, with ctx's error
// if it had to kill. Calling it before Run makes Run return ErrClosed.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	if !s.beginStop() {
		return nil
	}
	if s.inHook() {
		return ErrInHook // the stop goes on once the hook returns
	}
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.kill()
		<-s.done
		return ctx.Err()
	}
}

// Close stops the supervisor at once: every worker gets SIGKILL. It returns
// when Run has returned and is safe to call more than once.
func (s *Supervisor) Close() error {
	if !s.beginStop() {
		return nil
	}
	s.kill()
	if s.inHook() {
		return ErrInHook
	}
	<-s.done
	return nil
}

// beginStop asks the run goroutine to stop and reports whether there is a
// run to wait for.
func (s *Supervisor) beginStop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase == idle {
		s.phase = finished
		close(s.done)
		return false
	}
	s.stopOnce.Do(func() { close(s.stopC) })
	return true
}

func (s *Supervisor) kill() { s.killOnce.Do(func() { close(s.killC) }) }

// inHook reports whether the caller is a hook, running on its own
// goroutine locked to its thread (runHook): a call that waits for the run
// goroutine would wait for itself.
func (s *Supervisor) inHook() bool {
	id := s.hookThread.Load()
	return id != 0 && id == int64(threadID())
}

// Roll replaces every worker with a new one of the next generation, a
// surge of new workers at a time, retiring an old worker only once its
// replacement is ready: never fewer than N ready workers. If a new worker
// fails to become ready, the roll stops, every slot that took the new
// generation goes back to the previous one (readiness-gated too), and Roll
// returns why once it has. Generation numbers only go up: the next roll
// after a failed one gets a new number. A roll requested while one runs is queued; requests
// queued together are coalesced into one roll that starts after the current
// one. Roll waits for the roll to end; ctx only bounds the wait.
func (s *Supervisor) Roll(ctx context.Context) error {
	return s.await(ctx, func(t *table, done chan<- error) { t.requestRoll(done) })
}

// Upgrade replaces the supervisor's own program in place: it checks that the
// new binary starts (a preflight run with this process's argv and
// environment, which ends in the new program's New once New has checked
// everything: a build whose flags, main or New fail is refused), then execs
// it with the same pid,
// handing over the listening sockets and the worker table; the new program
// adopts the running workers. The new program must create its supervisor
// the same way (supervisor.Main does), and it finds the state in its
// environment. On success Upgrade does not return: the process runs the new
// program. On failure the supervisor keeps running as it was and Upgrade
// returns why.
func (s *Supervisor) Upgrade(ctx context.Context) error {
	return s.await(ctx, func(t *table, done chan<- error) { t.requestUpgrade(done) })
}

// Scale sets the number of workers. New slots start at once; removed ones
// retire their workers gracefully. Scale(ctx, 0) pauses: every worker
// retires, the sockets stay open (connections queue in the kernel) until a
// later Scale starts workers again.
func (s *Supervisor) Scale(ctx context.Context, n int) error {
	if n < 0 {
		return fmt.Errorf("supervisor: scale to %d: want 0 or more workers", n)
	}
	return s.await(ctx, func(t *table, done chan<- error) { t.scale(n); done <- nil })
}

// ScaleBy adds delta workers (removes them if delta is negative) and
// returns the new number. Going below 0 is an error, and changes nothing.
func (s *Supervisor) ScaleBy(ctx context.Context, delta int) (int, error) {
	var n int
	err := s.await(ctx, func(t *table, done chan<- error) {
		n = len(t.slots) + delta
		if n < 0 {
			done <- fmt.Errorf("supervisor: scale by %+d: there are only %d workers", delta, len(t.slots))
			return
		}
		t.scale(n)
		done <- nil
	})
	return n, err
}

// await sends a request that answers on done and waits for the answer.
//
// Once answered, it waits for the run goroutine to take another request:
// it publishes before it does, so Stats then shows the request's outcome.
func (s *Supervisor) await(ctx context.Context, req func(*table, chan<- error)) error {
	if s.inHook() {
		return ErrInHook
	}
	done := make(chan error, 1)
	if !s.call(func(t *table) { req(t, done) }) {
		return ErrClosed
	}
	select {
	case err := <-done:
		s.call(func(*table) {})
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		select {
		case err := <-done:
			return err
		default:
			return ErrClosed
		}
	}
}

// call runs f on the run goroutine and waits for it, or does nothing when
// the supervisor is not running. A call made while a hook runs is served
// once the hook and its event are done; never call it from a hook.
func (s *Supervisor) call(f func(*table)) bool {
	s.mu.Lock()
	p := s.phase
	s.mu.Unlock()
	if p != running {
		return false
	}
	ran := make(chan struct{})
	select {
	case s.reqs <- func(t *table) { f(t); close(ran) }:
		<-ran
		return true
	case <-s.done:
		return false
	}
}

// workerEnv is the environment of a new worker: the command's (or the
// supervisor's) environment without the variables handoff owns, then the
// worker's identity and the socket-activation variables.
func (s *Supervisor) workerEnv(socks []*listener.Socket, notify string, slot int, gen uint64) []string {
	base := s.cmd.Env
	if base == nil {
		base = os.Environ()
	}
	env := make([]string, 0, len(base)+6)
	for _, kv := range base {
		if !ownedVar(kv) {
			env = append(env, kv)
		}
	}
	env = append(env,
		fmt.Sprintf("%s=%d", worker.EnvWorker, slot),
		fmt.Sprintf("%s=%d", worker.EnvGeneration, gen),
		fmt.Sprintf("%s=%d", worker.EnvSupervisorPID, os.Getpid()),
		"NOTIFY_SOCKET="+notify,
		// The worker's drain deadline comes before the SIGKILL.
		fmt.Sprintf("%s=%v", worker.EnvStopTimeout, s.o.stopTimeout),
	)
	if s.o.watchdog > 0 {
		env = append(env, fmt.Sprintf("WATCHDOG_USEC=%d", s.o.watchdog.Microseconds()))
	}
	if f := logging.Format(s.log); f != "" { // the workers log in the supervisor's format
		env = append(env, worker.EnvLogFormat+"="+f)
	}
	names := make([]string, len(socks))
	for i, s := range socks {
		names[i] = s.Name()
	}
	return append(env, launch.ListenEnv(names)...)
}

// ownedVar reports whether kv sets a variable the supervisor provides.
func ownedVar(kv string) bool {
	for _, name := range []string{
		"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "NOTIFY_SOCKET",
		"WATCHDOG_USEC", "WATCHDOG_PID",
		worker.EnvWorker, worker.EnvGeneration, worker.EnvSupervisorPID, worker.EnvLivenessFd, worker.EnvStopTimeout, worker.EnvLogFormat, "HANDOFF_TRAMPOLINE", envPreflight, envUpgradeState,
		janitor.EnvState, janitor.Env,
	} {
		if len(kv) > len(name) && kv[len(name)] == '=' && kv[:len(name)] == name {
			return true
		}
	}
	return false
}

package supervisor

import (
	"log/slog"
	"slices"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/internal/logging"
	"github.com/handoff-dev/handoff/listener"
)

// An Option configures a Supervisor.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// options holds every setting with its default; New copies it, so a caller's
// values are never written back.
type options struct {
	workers     int
	addrs       []string
	sockets     []*listener.Socket
	logger      *zap.Logger
	hooks       Hooks
	minUptime   time.Duration
	backoffMin  time.Duration
	backoffMax  time.Duration
	stopSignal  syscall.Signal
	stopTimeout time.Duration
	subreaper   bool
	cgroups     cgroupMode // cgroup.go

	readiness    Readiness
	readyTimeout time.Duration
	surge        int
	acceptWindow time.Duration
	canary       int
	probe        *Probe // probe.go
	notifyAll    bool
	signals      bool
	upgradePath  string

	watchdog       time.Duration
	watchdogSignal syscall.Signal
	watchdogGrace  time.Duration
	maxLifetime    time.Duration
	lifetimeJitter time.Duration
	maxFailures    int
	maxDraining    int // see draining.go

	metrics       metricsOptions // metrics.go, queue.go
	healthAddr    string         // WithHealth; "" for none
	healthParsed  listener.Addr  // healthAddr, parsed by New
	cred          *Credential
	shutdownDelay time.Duration
	handover      bool // handover.go
	reusePort     bool // reuseport.go
}

func defaultOptions() options {
	return options{
		workers:     1,
		minUptime:   time.Second,
		backoffMin:  100 * time.Millisecond,
		backoffMax:  10 * time.Second,
		stopSignal:  syscall.SIGTERM,
		stopTimeout: 30 * time.Second,
		maxDraining: defaultMaxDraining,
		handover:    true,

		readiness:    ReadyOnStart(),
		readyTimeout: 60 * time.Second,
		surge:        1,
		acceptWindow: time.Second,
		canary:       1,

		watchdogSignal: syscall.SIGABRT,
		watchdogGrace:  3 * time.Second,
	}
}

// WithWorkers sets how many workers run at once (default 1).
func WithWorkers(n int) Option { return optionFunc(func(o *options) { o.workers = n }) }

// WithListen adds listening addresses, in the forms listener.ParseAddr
// accepts ("tcp://127.0.0.1:8080", "web=unix:///run/app.sock", a bare
// "host:port"). The supervisor binds them when Run starts, passes them to
// every worker in order, and closes them when Run returns.
func WithListen(addrs ...string) Option {
	return optionFunc(func(o *options) { o.addrs = append(o.addrs, addrs...) })
}

// WithSockets passes sockets the caller opened (for example adopted from
// systemd with listener.Adopt). They follow the WithListen addresses in the
// workers' fd order. The caller keeps ownership and closes them after Run.
func WithSockets(socks ...*listener.Socket) Option {
	return optionFunc(func(o *options) { o.sockets = append(o.sockets, socks...) })
}

// WithLogger sets the logger. Without it (or WithSlogHandler), the
// supervisor logs at info and above to stderr: console lines on a
// terminal, JSON lines otherwise. WithLogger(zap.NewNop()) silences it.
func WithLogger(l *zap.Logger) Option { return optionFunc(func(o *options) { o.logger = l }) }

// WithSlogHandler logs through a log/slog handler, for a program that
// carries a *slog.Logger: WithSlogHandler(logger.Handler()). The handler
// decides the level; zap's debug, info, warn and error map onto slog's.
func WithSlogHandler(h slog.Handler) Option {
	return optionFunc(func(o *options) { o.logger = zap.New(logging.SlogCore(h)) })
}

// WithHooks installs the hooks described on Hooks.
func WithHooks(h Hooks) Option { return optionFunc(func(o *options) { o.hooks = h }) }

// WithMinUptime sets how long a worker must stay up before its start counts
// as a success, like supervisord's startsecs (default 1s). A worker that
// exits sooner counts as a start failure and its replacement is delayed by
// the backoff; a worker that stayed up is replaced at once and resets the
// backoff of its slot.
func WithMinUptime(d time.Duration) Option { return optionFunc(func(o *options) { o.minUptime = d }) }

// WithBackoff sets the delay before restarting a slot after its first
// consecutive start failure (min, default 100ms); each further failure
// doubles it, up to max (default 10s).
func WithBackoff(min, max time.Duration) Option {
	return optionFunc(func(o *options) { o.backoffMin, o.backoffMax = min, max })
}

// WithStopSignal sets the signal that asks a worker to drain and exit
// (default SIGTERM).
func WithStopSignal(sig syscall.Signal) Option {
	return optionFunc(func(o *options) { o.stopSignal = sig })
}

// WithStopTimeout bounds how long a worker asked to exit may drain: one
// retired by a roll, a scale-down or a failed start, and every worker when
// Run's context is cancelled; workers still alive after it get SIGKILL
// (default 30s). 0 means no limit: never SIGKILL. Shutdown uses its own
// context's deadline instead.
func WithStopTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.stopTimeout = d })
}

// WithSubreaper makes the supervisor a child subreaper
// (PR_SET_CHILD_SUBREAPER), so that it also reaps orphaned grandchildren:
// the mode for PID 1 in a container, where it is on without this option.
// Orphans are reaped as they exit, and a stop reaches them: every child of
// the process that is not a worker counts as part of the workers' trees,
// gets the stop signal and SIGKILL at the stop timeout, and Run returns
// once they are gone.
//
// In this mode the supervisor reaps every child of the process with
// wait4(-1): os/exec in the same process sees ECHILD from Wait for its own
// children (their statuses are taken), and a child it started counts as a
// stray at a stop. Hooks are unaffected: OnExit gets the statuses of
// workers only; orphans' are logged at debug level. See package reap.
func WithSubreaper() Option { return optionFunc(func(o *options) { o.subreaper = true }) }

// WithCgroups says whether each worker runs in a cgroup v2 of its own. By
// default (without this option) cgroups are used where the process may
// make them: where the cgroup it runs in is writable (delegated to it, or
// as root). WithCgroups(true) makes Run fail where it cannot;
// WithCgroups(false) keeps to the /proc view of the workers' trees.
//
// With cgroups, the supervisor makes handoff-<pid> under its own cgroup
// and one child of that per worker (w-<slot>-<generation>-<n>); the worker
// is placed in it atomically as it is created (clone3, CLONE_INTO_CGROUP).
// Everything the worker starts stays in it, setsid'd and double-forked
// processes too: they get the stop signal, and at the stop timeout
// cgroup.kill ends all of them at once. A worker's cgroup is removed once
// nothing of its tree is left. The supervisor itself stays where it is and
// enables no controller: cgroup v2 refuses processes in a cgroup whose
// subtree_control enables domain controllers (the no-internal-process rule:
// EBUSY), which leaf cgroups for cgroup.kill alone never need.
func WithCgroups(on bool) Option {
	return optionFunc(func(o *options) {
		o.cgroups = cgroupsOff
		if on {
			o.cgroups = cgroupsOn
		}
	})
}

// Readiness says when a new worker counts as ready: serving, so that a roll
// may retire the worker it replaces.
type Readiness struct {
	mode  readyMode
	delay time.Duration
}

type readyMode int

const (
	readyStart readyMode = iota
	readyNotify
	readyDelay
)

// ReadyOnStart: a worker is ready as soon as its process exists. The
// default, for programs that cannot say when they serve.
func ReadyOnStart() Readiness { return Readiness{mode: readyStart} }

// ReadyOnNotify: a worker is ready when it sends READY=1 to $NOTIFY_SOCKET,
// as sd_notify does (in Go: worker.Ready).
func ReadyOnNotify() Readiness { return Readiness{mode: readyNotify} }

// ReadyAfter: a worker is ready once it has been up for d, for programs
// that serve soon after starting but cannot notify.
func ReadyAfter(d time.Duration) Readiness { return Readiness{mode: readyDelay, delay: d} }

func (r Readiness) String() string {
	switch r.mode {
	case readyNotify:
		return "notify"
	case readyDelay:
		return "delay:" + r.delay.String()
	}
	return "start"
}

// WithReadiness sets when a worker counts as ready (default ReadyOnStart).
func WithReadiness(r Readiness) Option { return optionFunc(func(o *options) { o.readiness = r }) }

// WithReadyTimeout bounds how long a worker may take to become ready
// (default 60s). One that takes longer is killed and counts as a start
// failure; during a roll, it aborts the roll.
func WithReadyTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.readyTimeout = d })
}

// WithSurge sets how many new workers a roll starts at once, beyond the N
// that serve (default 1). A roll never has fewer than N ready workers.
func WithSurge(n int) Option { return optionFunc(func(o *options) { o.surge = n }) }

// WithNotifyAccessAll accepts notify messages from any descendant of a
// worker, like systemd's NotifyAccess=all; by default only the worker
// process itself may send them (NotifyAccess=main). Messages from any other
// process are dropped and counted.
func WithNotifyAccessAll() Option { return optionFunc(func(o *options) { o.notifyAll = true }) }

// WithSignals makes Run handle the process's signals: SIGHUP rolls the
// workers, SIGUSR2 upgrades the supervisor in place, SIGTERM and SIGINT stop
// gracefully (a second one kills), SIGTTIN and SIGTTOU add and remove a
// worker. Main uses it; only one supervisor in a process should.
func WithSignals() Option { return optionFunc(func(o *options) { o.signals = true }) }

// WithUpgradePath sets the binary Upgrade executes (default: the running
// executable's path, which picks up a new build installed there).
func WithUpgradePath(path string) Option {
	return optionFunc(func(o *options) { o.upgradePath = path })
}

// WithWatchdog enables the sd_notify watchdog: each worker gets
// WATCHDOG_USEC (and WATCHDOG_PID, its own pid) and must send WATCHDOG=1
// at least every d (Go workers: worker.Run pings at half the interval). A
// worker that misses it, or sends WATCHDOG=trigger, gets the watchdog
// signal, then SIGKILL after the grace period, and is replaced.
func WithWatchdog(d time.Duration) Option { return optionFunc(func(o *options) { o.watchdog = d }) }

// WithWatchdogSignal sets the signal a hung worker gets first (default
// SIGABRT, so that it can dump its stacks) and how long it has to exit
// before SIGKILL (default 3s).
func WithWatchdogSignal(sig syscall.Signal, grace time.Duration) Option {
	return optionFunc(func(o *options) { o.watchdogSignal, o.watchdogGrace = sig, grace })
}

// WithMaxLifetime recycles each worker after it has been up for d plus a
// random part of jitter, so that workers do not all recycle at once. A
// recycled worker is replaced as in a roll: its replacement must be ready
// before it retires.
func WithMaxLifetime(d, jitter time.Duration) Option {
	return optionFunc(func(o *options) { o.maxLifetime, o.lifetimeJitter = d, jitter })
}

// Credential is a user and its groups, by number.
type Credential struct {
	UID, GID uint32
	// Groups are the supplementary groups; none when empty (the
	// supervisor's own are never passed on).
	Groups []uint32
}

// WithCredential runs the workers as another user, so that a supervisor
// started as root, which binds a privileged port and passes it on, does
// not hand root to the server it runs. Changing user needs the privilege to
// (root, or CAP_SETUID and CAP_SETGID). The worker program, and the
// supervisor's own binary, which starts it (see package internal/launch),
// must be executable by that user.
func WithCredential(c Credential) Option {
	return optionFunc(func(o *options) {
		c.Groups = slices.Clone(c.Groups)
		o.cred = &c
	})
}

// WithMaxStartFailures makes Run give up after n consecutive start
// failures of one slot (a worker that cannot be started, or that exits
// before it has been up for the minimum uptime): it stops the other workers
// and returns an error saying why, like systemd's start limit. The default,
// 0, retries forever with backoff.
func WithMaxStartFailures(n int) Option { return optionFunc(func(o *options) { o.maxFailures = n }) }

// WithAcceptWindow sets how long a roll's first new workers (its canaries,
// see WithCanary) must stay up and ready before their generation is
// accepted (default 1s): "ready" is what a program says, and some say it
// before they serve (gunicorn's arbiter is ready before its workers import
// the app). Until then the canaries serve beside the workers they replace,
// which are not retired; a canary that exits, is found hung by the
// watchdog, or is vetoed by the OnCanary hook within the window fails the
// roll, which then rolls back. 0 accepts a generation as soon as its
// canaries are ready.
func WithAcceptWindow(d time.Duration) Option {
	return optionFunc(func(o *options) { o.acceptWindow = d })
}

// WithCanary sets how many new workers a roll starts beside the old
// generation and watches for the accept window before it rolls the rest,
// a surge at a time (default 1).
func WithCanary(n int) Option { return optionFunc(func(o *options) { o.canary = n }) }

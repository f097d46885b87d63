package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/supervisor"
)

// usageError is a bad command line; handoff exits with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// serveConfig is the command line of the supervisor.
type serveConfig struct {
	listen       []string
	workers      int
	ready        readyFlag
	readyTimeout time.Duration
	acceptWindow time.Duration
	canary       int
	probe        probeFlag
	probeExec    probeFlag
	stopTimeout  time.Duration
	stopSignal   signalFlag
	watchdog     time.Duration
	pidfile      string
	control      string
	logFormat    logFormatFlag
	subreaper    bool
	cgroups      cgroupsFlag
	metrics      string // -metrics ADDR; "" for none
	notServed    time.Duration
	handover     bool
	reusePort    bool
	version      bool
	command      []string

	// Init duties and the rest of the library's settings.
	remapExit        exitMap
	surge            int
	maxDraining      int
	minUptime        time.Duration
	backoff          time.Duration
	backoffMax       time.Duration
	maxStartFailures int
	maxLifetime      time.Duration
	lifetimeJitter   time.Duration
	env              []string
	chdir            string
	user, group      string
	shutdownDelay    time.Duration
	health           string
	cred             *supervisor.Credential // from -user and -group
}

// serveFlags declares the supervisor's flags, with their defaults, in cfg.
func serveFlags(cfg *serveConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("handoff", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, help by printHelp
	*cfg = serveConfig{
		workers:      1,
		ready:        readyFlag{r: supervisor.ReadyOnStart(), s: "start"},
		readyTimeout: 60 * time.Second,
		acceptWindow: 3 * time.Second,
		canary:       1,
		stopTimeout:  30 * time.Second,
		stopSignal:   signalFlag{sig: syscall.SIGTERM, s: "TERM"},
		surge:        1,
		maxDraining:  8,
		minUptime:    time.Second,
		backoff:      100 * time.Millisecond,
		backoffMax:   10 * time.Second,
	}
	fs.Var((*listenFlag)(&cfg.listen), "listen", "")
	fs.Var((*intFlag)(&cfg.workers), "workers", "")
	fs.Var(&cfg.ready, "ready", "")
	fs.Var((*durationFlag)(&cfg.readyTimeout), "ready-timeout", "")
	fs.Var((*durationFlag)(&cfg.acceptWindow), "accept-window", "")
	fs.Var((*intFlag)(&cfg.canary), "canary", "")
	fs.Var(&cfg.probe, "probe", "")
	fs.Var((*probeExecFlag)(&cfg.probeExec), "probe-exec", "")
	fs.Var((*durationFlag)(&cfg.stopTimeout), "stop-timeout", "")
	fs.Var(&cfg.stopSignal, "stop-signal", "")
	fs.Var((*durationFlag)(&cfg.watchdog), "watchdog", "")
	fs.Var(&cfg.remapExit, "remap-exit", "")
	fs.Var((*intFlag)(&cfg.surge), "surge", "")
	fs.Var((*intFlag)(&cfg.maxDraining), "max-draining", "")
	fs.Var((*durationFlag)(&cfg.minUptime), "min-uptime", "")
	fs.Var((*durationFlag)(&cfg.backoff), "backoff", "")
	fs.Var((*durationFlag)(&cfg.backoffMax), "backoff-max", "")
	fs.Var((*intFlag)(&cfg.maxStartFailures), "max-start-failures", "")
	fs.Var((*durationFlag)(&cfg.maxLifetime), "max-lifetime", "")
	fs.Var((*durationFlag)(&cfg.lifetimeJitter), "lifetime-jitter", "")
	fs.Var((*envFlag)(&cfg.env), "env", "")
	fs.StringVar(&cfg.chdir, "chdir", "", "")
	fs.StringVar(&cfg.user, "user", "", "")
	fs.Var((*durationFlag)(&cfg.shutdownDelay), "shutdown-delay", "")
	fs.StringVar(&cfg.health, "health", "", "")
	fs.StringVar(&cfg.group, "group", "", "")
	fs.StringVar(&cfg.pidfile, "pidfile", "", "")
	fs.StringVar(&cfg.control, "control", "", "")
	fs.Var(&cfg.logFormat, "log-format", "")
	fs.BoolVar(&cfg.subreaper, "init", false, "")
	fs.BoolVar(&cfg.subreaper, "subreaper", false, "") // the old name of -init
	fs.Var(&cfg.cgroups, "cgroups", "")
	fs.StringVar(&cfg.metrics, "metrics", "", "")
	fs.DurationVar(&cfg.notServed, "not-served-after", 10*time.Second, "")
	fs.BoolVar(&cfg.handover, "handover", true, "")
	fs.BoolVar(&cfg.reusePort, "reuseport", false, "")
	fs.BoolVar(&cfg.version, "version", false, "")
	return fs
}

// parseServe parses the supervisor's command line: flags, then the command
// to run, best after "--". Errors are usageErrors, or flag.ErrHelp.
func parseServe(args []string) (*serveConfig, error) {
	var cfg serveConfig
	fs := serveFlags(&cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err}
	}
	if cfg.version {
		return &cfg, nil
	}
	cfg.command = fs.Args()
	switch {
	case len(cfg.command) == 0:
		return nil, usagef("no command to run: put it after the flags, e.g. handoff -listen tcp://127.0.0.1:8080 -- gunicorn app:app")
	case cfg.command[0] == "":
		return nil, usagef("the command to run is an empty string")
	case cfg.workers < 1 || cfg.workers > maxWorkers:
		return nil, usagef("-workers %d: want 1 to %d", cfg.workers, maxWorkers)
	case cfg.readyTimeout <= 0:
		return nil, usagef("-ready-timeout %v: want a positive duration, e.g. 30s", cfg.readyTimeout)
	case cfg.acceptWindow < 0:
		return nil, usagef("-accept-window %v: want 0 or a positive duration, e.g. 5s", cfg.acceptWindow)
	case cfg.canary < 1:
		return nil, usagef("-canary %d: want at least 1 worker", cfg.canary)
	case cfg.probe.p != nil && cfg.probeExec.p != nil:
		return nil, usagef("-probe and -probe-exec: give one probe")
	case cfg.stopTimeout <= 0:
		return nil, usagef("-stop-timeout %v: want a positive duration, e.g. 30s", cfg.stopTimeout)
	case cfg.watchdog < 0 || cfg.watchdog > 0 && cfg.watchdog < time.Millisecond:
		return nil, usagef("-watchdog %v: want 0 (off) or at least 1ms, e.g. 10s", cfg.watchdog)
	case cfg.surge < 1 || cfg.surge > maxWorkers:
		return nil, usagef("-surge %d: want 1 to %d", cfg.surge, maxWorkers)
	case cfg.maxDraining < 0:
		return nil, usagef("-max-draining %d: want 0 (no cap) or more", cfg.maxDraining)
	case cfg.minUptime < 0:
		return nil, usagef("-min-uptime %v: want a duration of 0 or more, e.g. 1s", cfg.minUptime)
	case cfg.backoff <= 0:
		return nil, usagef("-backoff %v: want a positive duration, e.g. 100ms", cfg.backoff)
	case cfg.backoffMax < cfg.backoff:
		return nil, usagef("-backoff-max %v: want at least -backoff (%v), e.g. 10s", cfg.backoffMax, cfg.backoff)
	case cfg.maxStartFailures < 0:
		return nil, usagef("-max-start-failures %d: want 0 (retry forever) or more", cfg.maxStartFailures)
	case cfg.maxLifetime < 0:
		return nil, usagef("-max-lifetime %v: want 0 (forever) or a positive duration, e.g. 1h", cfg.maxLifetime)
	case cfg.lifetimeJitter < 0:
		return nil, usagef("-lifetime-jitter %v: want a duration of 0 or more, e.g. 10m", cfg.lifetimeJitter)
	case cfg.shutdownDelay < 0:
		return nil, usagef("-shutdown-delay %v: want a duration of 0 or more, e.g. 5s", cfg.shutdownDelay)
	case cfg.lifetimeJitter > 0 && cfg.maxLifetime == 0:
		return nil, usagef("-lifetime-jitter %v needs -max-lifetime", cfg.lifetimeJitter)
	}
	if cfg.notServed < 0 {
		return nil, usagef("-not-served-after %v: want 0 (off) or a positive duration, e.g. 30s", cfg.notServed)
	}
	// -health and -metrics take the addresses -listen takes.
	for _, f := range []struct{ name, addr string }{{"health", cfg.health}, {"metrics", cfg.metrics}} {
		if _, err := listener.ParseAddr(f.addr); f.addr != "" && err != nil {
			return nil, usagef("-%s: %v", f.name, err)
		}
	}
	var err error
	if cfg.pidfile, err = absPath("-pidfile", cfg.pidfile); err != nil {
		return nil, err
	}
	if cfg.pidfile != "" {
		// Nothing is created for a pid file but the file itself and its
		// control socket's directory beside it: a directory that is
		// missing is a typo, or a /run/NAME that systemd's
		// RuntimeDirectory= should make.
		dir := filepath.Dir(cfg.pidfile)
		if fi, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
			return nil, usagef("-pidfile %s: the directory %s does not exist", cfg.pidfile, dir)
		} else if err != nil {
			return nil, usagef("-pidfile %s: %v", cfg.pidfile, err)
		} else if !fi.IsDir() {
			return nil, usagef("-pidfile %s: %s is not a directory", cfg.pidfile, dir)
		}
	}
	if cfg.control, err = absPath("-control", cfg.control); err != nil {
		return nil, err
	}
	if cfg.cred, err = lookupCredential(cfg.user, cfg.group); err != nil {
		return nil, err
	}
	if cfg.chdir != "" {
		if fi, err := os.Stat(cfg.chdir); err != nil {
			return nil, usagef("-chdir %s: %v", cfg.chdir, errors.Unwrap(err))
		} else if !fi.IsDir() {
			return nil, usagef("-chdir %s: not a directory", cfg.chdir)
		}
		if cfg.chdir, err = absPath("-chdir", cfg.chdir); err != nil {
			return nil, err
		}
	}
	return &cfg, nil
}

// absPath makes a path flag's value absolute, so that the log names the
// real file and an upgraded program finds the same one.
func absPath(name, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	a, err := filepath.Abs(p)
	if err != nil {
		return "", usagef("%s %q: %v", name, p, err)
	}
	return a, nil
}

// listenFlag collects -listen addresses, checked as they are given.
type listenFlag []string

func (l *listenFlag) String() string { return strings.Join(*l, " ") }

func (l *listenFlag) Set(s string) error {
	if _, err := listener.ParseAddr(s); err != nil {
		return err
	}
	*l = append(*l, s)
	return nil
}

// readyFlag is -ready: notify, start or delay:DUR.
type readyFlag struct {
	r supervisor.Readiness
	s string
}

func (f *readyFlag) String() string { return f.s }

func (f *readyFlag) Set(s string) error {
	switch {
	case s == "notify":
		f.r = supervisor.ReadyOnNotify()
	case s == "start":
		f.r = supervisor.ReadyOnStart()
	case strings.HasPrefix(s, "delay:"):
		d, err := time.ParseDuration(strings.TrimPrefix(s, "delay:"))
		if err != nil || d < 0 {
			return fmt.Errorf("want delay:DURATION with a duration of 0 or more, e.g. delay:2s")
		}
		f.r = supervisor.ReadyAfter(d)
	default:
		return errors.New("want notify, start or delay:DURATION")
	}
	f.s = s
	return nil
}

// signalFlag is -stop-signal: a name, with or without SIG, or a number.
type signalFlag struct {
	sig syscall.Signal
	s   string
}

func (f *signalFlag) String() string { return f.s }

func (f *signalFlag) Set(s string) error {
	sig, err := parseSignal(s)
	if err != nil {
		return err
	}
	f.sig, f.s = sig, s
	return nil
}

// lookupCredential resolves -user and -group, names or numbers: -user alone
// takes the user's primary group; -group alone keeps handoff's user.
func lookupCredential(name, group string) (*supervisor.Credential, error) {
	if name == "" && group == "" {
		return nil, nil
	}
	c := &supervisor.Credential{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	if name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			if _, nerr := strconv.ParseUint(name, 10, 32); nerr != nil {
				return nil, usagef("-user %s: no such user: want a user name or a number, e.g. -user nobody", quoteShort(name))
			}
			u, err = user.LookupId(name)
			if err != nil { // a uid with no entry in the user database
				uid, _ := strconv.ParseUint(name, 10, 32)
				c.UID = uint32(uid)
				u = nil
			}
		}
		if u != nil {
			uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
			gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
			if err1 != nil || err2 != nil {
				return nil, usagef("-user %s: uid %q, gid %q are not numbers", quoteShort(name), u.Uid, u.Gid)
			}
			c.UID, c.GID = uint32(uid), uint32(gid)
		}
	}
	if group != "" {
		gid, err := strconv.ParseUint(group, 10, 32)
		if err != nil {
			g, lerr := user.LookupGroup(group)
			if lerr != nil {
				return nil, usagef("-group %s: no such group: want a group name or a number, e.g. -group nogroup", quoteShort(group))
			}
			if gid, err = strconv.ParseUint(g.Gid, 10, 32); err != nil {
				return nil, usagef("-group %s: gid %q is not a number", quoteShort(group), g.Gid)
			}
		}
		c.GID = uint32(gid)
	}
	return c, nil
}

// intFlag is a whole-number flag whose error says what it wants.
// probeFlag is -probe http://HOST:PORT/PATH or tcp://HOST:PORT.
type probeFlag struct{ p *supervisor.Probe }

func (f *probeFlag) String() string {
	if f.p == nil {
		return ""
	}
	return f.p.String()
}

func (f *probeFlag) Set(s string) error {
	var p supervisor.Probe
	switch {
	case strings.HasPrefix(s, "http://"), strings.HasPrefix(s, "https://"):
		p = supervisor.ProbeHTTP(s)
	case strings.HasPrefix(s, "tcp://"):
		p = supervisor.ProbeTCP(strings.TrimPrefix(s, "tcp://"))
	default:
		return errors.New("want http://HOST:PORT/PATH or tcp://HOST:PORT")
	}
	if p.Check() != nil || strings.TrimPrefix(s, "tcp://") == "" {
		return errors.New("want http://HOST:PORT/PATH or tcp://HOST:PORT")
	}
	f.p = &p
	return nil
}

// probeExecFlag is -probe-exec "CMD ARGS", split at spaces.
type probeExecFlag probeFlag

func (f *probeExecFlag) String() string { return (*probeFlag)(f).String() }

func (f *probeExecFlag) Set(s string) error {
	argv := strings.Fields(s)
	if len(argv) == 0 {
		return errors.New(`want a command, e.g. "curl -fsS http://127.0.0.1:8000/healthz"`)
	}
	p := supervisor.ProbeExec(argv...)
	f.p = &p
	return nil
}

type intFlag int

func (f *intFlag) String() string { return strconv.Itoa(int(*f)) }

func (f *intFlag) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil {
		return errors.New("want a whole number, e.g. 4")
	}
	*f = intFlag(n)
	return nil
}

// durationFlag is a duration flag whose error says what it wants.
type durationFlag time.Duration

func (f *durationFlag) String() string { return time.Duration(*f).String() }

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration with a unit, e.g. 1.5s, 300ms or 2m")
	}
	*f = durationFlag(d)
	return nil
}

// envFlag collects -env KEY=VALUE.
type envFlag []string

func (f *envFlag) String() string { return strings.Join(*f, " ") }

func (f *envFlag) Set(s string) error {
	k, _, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return errors.New("want KEY=VALUE, e.g. -env APP_ENV=production")
	case k == "" || strings.ContainsAny(k, "\x00 \t\n"):
		return errors.New("want KEY=VALUE with a name of no spaces before the =")
	case strings.ContainsRune(s, 0):
		return errors.New("the value holds a NUL byte")
	}
	*f = append(*f, s)
	return nil
}

// exitMap is -remap-exit FROM=TO, repeatable: handoff exits with TO where it
// would have exited with FROM (tini's -e, generalised).
type exitMap map[int]int

func (m *exitMap) String() string {
	var parts []string
	for from, to := range *m {
		parts = append(parts, fmt.Sprintf("%d=%d", from, to))
	}
	slices.Sort(parts)
	return strings.Join(parts, ",")
}

func (m *exitMap) Set(s string) error {
	a, b, ok := strings.Cut(s, "=")
	from, err1 := strconv.Atoi(a)
	to, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || from < 0 || from > 255 || to < 0 || to > 255 {
		return errors.New("want FROM=TO, two exit codes from 0 to 255, e.g. 143=0")
	}
	if *m == nil {
		*m = exitMap{}
	}
	(*m)[from] = to
	return nil
}

// apply returns the exit code handoff exits with instead of code.
func (m exitMap) apply(code int) int {
	if to, ok := m[code]; ok {
		return to
	}
	return code
}

// logFormatFlag is -log-format; "" picks console on a terminal, JSON
// otherwise.
type logFormatFlag string

func (f *logFormatFlag) String() string { return string(*f) }

func (f *logFormatFlag) Set(s string) error {
	if s != "console" && s != "json" {
		return errors.New("want console or json")
	}
	*f = logFormatFlag(s)
	return nil
}

// cgroupsFlag is -cgroups auto|on|off; "" is auto.
type cgroupsFlag string

func (f *cgroupsFlag) String() string { return string(*f) }

func (f *cgroupsFlag) Set(s string) error {
	if s != "auto" && s != "on" && s != "off" {
		return errors.New("want auto, on or off")
	}
	*f = cgroupsFlag(s)
	return nil
}

// clientConfig is the command line of a control subcommand.
type clientConfig struct {
	op       op
	workers  int  // scale
	relative bool // scale +N, -N
	pidfile  string
	control  string
	json     bool
	watch    time.Duration // status -watch: the refresh period; 0: once
	timeout  time.Duration
}

func clientFlags(cfg *clientConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("handoff "+cfg.op.String(), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg.timeout = 2 * time.Minute
	fs.StringVar(&cfg.pidfile, "pidfile", "", "")
	fs.StringVar(&cfg.control, "control", "", "")
	fs.BoolVar(&cfg.json, "json", false, "")
	if cfg.op == opStatus {
		fs.Var(watchFlag{&cfg.watch}, "watch", "")
	}
	fs.DurationVar(&cfg.timeout, "timeout", cfg.timeout, "")
	return fs
}

// parseClient parses "handoff status|reload|upgrade|scale N [flags]"; the
// flags may come before or after N.
func parseClient(o op, args []string) (*clientConfig, error) {
	cfg := &clientConfig{op: o}
	fs := clientFlags(cfg)
	var pos []string
	if o == opScale {
		// "scale -1" is a change of the number, not a flag.
		for i, a := range args {
			if len(a) > 1 && a[0] == '-' && strings.Trim(a[1:], "0123456789") == "" {
				pos = append(pos, a)
				args = append(args[:i:i], args[i+1:]...)
				break
			}
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{fmt.Errorf("%s: %w", o, err)}
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case o == opScale && len(pos) != 1:
		return nil, usagef("scale takes one argument, the number of workers, e.g. handoff scale 4 -pidfile /run/app/handoff.pid")
	case o == opScale:
		n, rel, err := parseScale(pos[0])
		if err != nil {
			return nil, usagef("scale: %v", err)
		}
		cfg.workers, cfg.relative = n, rel
	case len(pos) > 0:
		return nil, usagef("%s takes no argument, got %q", o, pos[0])
	}
	switch {
	case cfg.pidfile == "" && cfg.control == "":
		return nil, usagef("%s: say which handoff with -pidfile PATH or -control PATH", o)
	case cfg.timeout <= 0:
		return nil, usagef("%s: -timeout %v: want a positive duration, e.g. 30s", o, cfg.timeout)
	}
	return cfg, nil
}

// helpText documents every flag with an example; a test checks that none
// is missing.
const helpText = `handoff runs a server as N worker processes on listening sockets it owns,
and replaces them without dropping a connection.

Usage:
  handoff [flags] -- COMMAND [ARG...]      supervise COMMAND
  handoff status  [-json] [-watch[=DURATION]] (-pidfile PATH | -control PATH)
  handoff reload  [-json] (-pidfile PATH | -control PATH)
  handoff upgrade [-json] (-pidfile PATH | -control PATH)
  handoff scale N|+N|-N [-json] (-pidfile PATH | -control PATH)

COMMAND gets the sockets the systemd way: fd 3, 4, ... with LISTEN_FDS,
LISTEN_FDNAMES and LISTEN_PID (its own pid), and NOTIFY_SOCKET for sd_notify.
Servers that speak socket activation (gunicorn, uvicorn --fd, Go with
listener.Inherit, anything built on libsystemd) run unchanged.

Flags:
  -listen ADDR
      Listen on ADDR and pass the socket to every worker; repeatable, in fd
      order. tcp://host:port, tcp4://, tcp6://[::1]:port, unix:///path,
      unix://@abstract, or host:port. A name= prefix names the fd in
      LISTEN_FDNAMES. Optional when systemd passes handoff its sockets
      (a .socket unit): they follow the -listen ones.
      e.g. -listen tcp://0.0.0.0:8080 -listen admin=unix:///run/app/admin.sock
  -workers N
      How many workers run at once (default 1).
      e.g. -workers 4
  -ready notify|start|delay:DURATION
      When a new worker counts as ready, so that a rolling restart may retire
      the one it replaces: notify waits for READY=1 on NOTIFY_SOCKET; start
      counts it ready once spawned; delay:D once it has run for D
      (default start).
      e.g. -ready notify
  -ready-timeout DURATION
      How long a new worker may take to be ready before it is killed; during
      a roll this stops the roll and the old workers keep serving (default 1m).
      e.g. -ready-timeout 30s
  -accept-window DURATION
      How long a roll's first new workers (its canaries) must stay up after
      they are ready before the new generation is accepted and the old
      workers retire; a canary that exits meanwhile fails the reload, which
      puts every slot back on the previous generation (default 3s). Servers
      that say ready before they serve (gunicorn without --preload) need it.
      e.g. -accept-window 5s
  -canary N
      How many new workers a roll starts beside the old ones and watches for
      the accept window before it rolls the rest (default 1).
      e.g. -canary 2
  -probe URL
      A probe the canaries must pass during the accept window, else the
      reload fails and rolls back: http://HOST:PORT/PATH (a GET answered 200
      to 399) or tcp://HOST:PORT (a connect). It goes through the shared
      socket, so it checks the canaries among the old workers, 10 times
      spread over the window: use it for servers whose ready lies.
      e.g. -probe http://127.0.0.1:8000/healthz
  -probe-exec "CMD ARGS"
      A command run once per canary at the end of the accept window, with
      HANDOFF_PROBE_PID set to the canary's pid; exit 0 passes, else the
      reload fails and rolls back (like Kubernetes' exec probe).
      e.g. -probe-exec "/srv/app/check --pid-env HANDOFF_PROBE_PID"
  -stop-timeout DURATION
      How long a worker asked to stop may drain before SIGKILL (default 30s).
      e.g. -stop-timeout 1m
  -stop-signal SIGNAL
      The signal that asks a worker to drain and exit, by name or number
      (default TERM).
      e.g. -stop-signal QUIT
  -watchdog DURATION
      Require WATCHDOG=1 on NOTIFY_SOCKET from each worker at least this
      often; a worker that misses it is killed and replaced. Workers get
      WATCHDOG_USEC (default 0: off).
      e.g. -watchdog 10s
  -pidfile PATH
      Write handoff's pid to PATH. The control subcommands find this
      handoff by it; unless -control says otherwise, the control socket is
      PATH.ctl/control.sock.
      e.g. -pidfile /run/app/handoff.pid
  -control PATH
      Serve the control subcommands on a unix socket at PATH (mode 0600), in
      a directory only handoff's user may enter (created with mode 0700).
      e.g. -control /run/app/control/handoff.sock
  -log-format console|json
      console: a line per event for people; json: a JSON object per line
      (default: console on a terminal, json otherwise).
      e.g. -log-format json
  -init
      Do an init's duties: become a child subreaper that reaps every orphan
      re-parented to handoff, and stop every process left under it with the
      workers. On by itself when handoff is PID 1 (a container's
      entrypoint). -subreaper is its old name.
      e.g. -init
  -subreaper
      The same as -init.
      e.g. -subreaper
  -cgroups auto|on|off
      Run each worker in a cgroup v2 of its own, made under handoff's own
      cgroup, so that a stop reaches and, at -stop-timeout, kills
      (cgroup.kill) everything the worker started, setsid'd and
      double-forked processes too. auto (the default): where handoff's
      cgroup is writable (root, or delegated); on: fail where it is not;
      off: find workers' trees from /proc only.
      e.g. -cgroups off
  -metrics ADDR
      Serve Prometheus metrics at http://ADDR/metrics (any path answers),
      from handoff itself: it keeps serving across upgrades in place, and its
      counters never go back (default: off).
      e.g. -metrics tcp://127.0.0.1:9100
  -not-served-after DURATION
      Warn, once, when a socket's accept queue stays non-empty and does not
      go down for this long while workers are ready: they do not accept on
      it (a server that ignores LISTEN_FDS). status and the metrics show it
      too (default 10s; 0: off).
      e.g. -not-served-after 30s
  -handover
      Hand a draining worker's idle connections to a ready worker of the
      newest generation instead of closing them: clients never reconnect.
      Go workers using package worker's drain do it (plaintext HTTP/1.x);
      others are unaffected. Each worker gets HANDOFF_HANDOVER_FD (default
      true).
      e.g. -handover=false
  -reuseport
      Bind each -listen TCP address once per worker slot (SO_REUSEPORT):
      slot i's worker, and its replacements in a roll, get slot i's socket
      as fd 3 (same names), so workers do not share one accept queue. The
      kernel ignores how busy a worker is: a slow one keeps its share of new
      connections. Unix and systemd-passed sockets stay shared. Scaling
      down resets connections queued on a removed slot's socket unless
      net.ipv4.tcp_migrate_req=1 (default false).
      e.g. -reuseport -workers 8
  -remap-exit FROM=TO
      Exit with TO where handoff would exit with FROM; repeatable (tini's -e,
      generalised). See Exit status below.
      e.g. -remap-exit 143=0
  -surge N
      How many new workers a rolling restart starts at once (default 1).
      e.g. -surge 2
  -max-draining N
      How many retired generations may drain at once at their own pace
      (idle keep-alive connections are not closed, so a retired worker
      lingers until its clients leave); past it, the oldest are told to end
      their drain now, with a second stop signal (default 8; 0: no cap).
      e.g. -max-draining 2
  -min-uptime DURATION
      How long a worker must run for its start to count as a success; one
      that exits sooner is a start failure, restarted after the backoff
      (default 1s).
      e.g. -min-uptime 5s
  -backoff DURATION
      The delay before restarting a worker after its first start failure in
      a row; it doubles with each further one (default 100ms).
      e.g. -backoff 500ms
  -backoff-max DURATION
      The longest backoff (default 10s).
      e.g. -backoff-max 1m
  -max-start-failures N
      Give up after N start failures in a row of one worker: stop the others
      and exit with the failing worker's status (default 0: retry forever).
      e.g. -max-start-failures 5
  -max-lifetime DURATION
      Replace each worker after it has run this long, as a rolling restart
      does (gunicorn's max_requests role; default 0: never).
      e.g. -max-lifetime 6h
  -lifetime-jitter DURATION
      Add a random part of up to DURATION to each worker's -max-lifetime, so
      that they do not all restart at once (default 0).
      e.g. -lifetime-jitter 30m
  -env KEY=VALUE
      Set a variable in the workers' environment; repeatable.
      e.g. -env APP_ENV=production -env WEB_CONCURRENCY=4
  -chdir DIR
      Run the workers in DIR (default: handoff's working directory).
      e.g. -chdir /srv/app
  -shutdown-delay DURATION
      On TERM or INT, keep the workers serving for DURATION while -health's
      /readyz answers 503, so that a load balancer (a Kubernetes readiness
      probe) stops sending traffic first; then stop (default 0).
      e.g. -shutdown-delay 5s
  -health ADDR
      Serve probes over HTTP on ADDR: /livez answers 200 while handoff runs;
      /readyz 200 while it serves, 503 once a stop (and its -shutdown-delay)
      has begun. ADDR as for -listen: HOST:PORT, tcp://HOST:PORT or
      unix:///PATH.
      e.g. -health 0.0.0.0:8081
  -user USER
      Run the workers as USER, a name or a number, in its primary group;
      handoff keeps its own user, and the sockets it bound (a port below
      1024 as root). handoff's binary and the command must be executable by
      USER.
      e.g. -user www-data
  -group GROUP
      Run the workers in GROUP, a name or a number (default: -user's primary
      group, or handoff's).
      e.g. -group www-data
  -version
      Print the version and exit.
      e.g. -version

Flags of status, reload, upgrade and scale:
  -pidfile PATH     find the handoff through its pid file
                    e.g. handoff status -pidfile /run/app/handoff.pid
  -control PATH     talk to the control socket at PATH
                    e.g. handoff reload -control /run/app/control/handoff.sock
  -json             print the answer as JSON, for scripts
                    e.g. handoff status -json -pidfile /run/app/handoff.pid
  -watch            status only: refresh every second (-watch=DURATION:
                    every DURATION), in place on a terminal, until interrupted
                    e.g. handoff status -watch -pidfile /run/app/handoff.pid
  -timeout DURATION how long to wait for the answer (default 2m)
                    e.g. handoff reload -timeout 5m -pidfile /run/app/handoff.pid

Signals to handoff: HUP rolls the workers to a new generation; USR2 upgrades
handoff in place (same pid, workers kept); TERM or INT stops (a second one
kills); TTIN and TTOU add and remove a worker.

Exit status: 0 after a requested stop (TERM, INT), however the workers
exited; 2 for a bad command line; when handoff gives up on a worker
(-max-start-failures), the worker's last exit code, or 128+n if signal n
killed it; 1 otherwise. -remap-exit changes any of them.

Example:
  handoff -listen tcp://127.0.0.1:8080 -workers 4 -ready notify -pidfile /tmp/app.pid -- gunicorn app:app
  handoff status -pidfile /tmp/app.pid
  handoff reload -pidfile /tmp/app.pid
`

func printHelp(w io.Writer) { io.WriteString(w, helpText) }

// watchFlag is status's -watch: a boolean flag ("-watch" refreshes every
// second) that also takes a period ("-watch=500ms").
type watchFlag struct{ d *time.Duration }

func (f watchFlag) String() string {
	if f.d == nil || *f.d == 0 {
		return "false"
	}
	return f.d.String()
}

func (f watchFlag) IsBoolFlag() bool { return true }

func (f watchFlag) Set(s string) error {
	switch s {
	case "true":
		*f.d = time.Second
		return nil
	case "false":
		*f.d = 0
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 10*time.Millisecond {
		return errors.New("want a period of at least 10ms, e.g. -watch=2s")
	}
	*f.d = d
	return nil
}

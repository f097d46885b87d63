package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/peers"
)

// A restart that did not complete is not fatal: the run goes on and
// counts it.
var (
	// errIncomplete: the restart was not seen complete before the next one
	// was due.
	errIncomplete = errors.New("not complete before the next one was due")
)

// restartError is a restart the subject reported as failed; the run goes
// on.
type restartError struct{ why string }

func (e *restartError) Error() string { return "restart failed: " + e.why }

// subject is a server under test, started and stopped once per run.
type subject interface {
	// name is the row's name in the tables.
	name() string
	// start starts the server and returns its address once it answers.
	start(ctx context.Context) (addr string, err error)
	// restart sends one restart (or upgrade) and waits, until ctx is done,
	// to see it complete: sent is when the signal went out, took how long
	// the completion took to be seen. errIncomplete or a *restartError
	// are not fatal.
	restart(ctx context.Context) (sent time.Time, took time.Duration, err error)
	// stop stops the server gracefully and waits for every process of it.
	stop() error
}

// exEvent is a line of the example's JSON log (zap's production format).
type exEvent struct {
	Msg        string  `json:"msg"`
	Level      string  `json:"level"`
	TS         epoch   `json:"ts"`
	Addr       string  `json:"addr"`
	Pid        int     `json:"pid"`
	Generation uint64  `json:"generation"`
	After      float64 `json:"after"` // seconds
	Error      string  `json:"error"`
}

func parseEvent(line string) (exEvent, bool) {
	var ev exEvent
	if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Msg == "" {
		return exEvent{}, false
	}
	return ev, true
}

// secs converts a float of seconds from a log line.
func secs(s float64) time.Duration { return time.Duration(s * float64(time.Second)) }

// handoffSubject is the example supervisor: SIGHUP rolls, SIGUSR2 upgrades
// in place.
type handoffSubject struct {
	bin       string
	workers   int
	reusePort bool     // -reuseport: a socket per worker slot (SO_REUSEPORT) instead of one shared socket
	upgrade   bool     // restart sends SIGUSR2 instead of SIGHUP
	args      []string // more flags of the example (traffic: -h2c)
	echo      io.Writer
	p         *proc
}

func (s *handoffSubject) name() string {
	if s.reusePort {
		return nameHandoffReusePort
	}
	return "handoff"
}

func (s *handoffSubject) start(ctx context.Context) (string, error) {
	args := append([]string{"-listen", "127.0.0.1:0", "-workers", strconv.Itoa(s.workers)}, s.args...)
	if s.reusePort {
		args = append(args, "-reuseport")
	}
	p, err := startProc(s.name(), s.bin, args, nil, s.echo)
	if err != nil {
		return "", err
	}
	s.p = p
	var addr string
	ready := 0
	_, err = p.log.cursor().find(ctx, func(ln logLine) (bool, error) {
		ev, ok := parseEvent(ln.text)
		switch {
		case !ok:
		case ev.Msg == "listening":
			addr = ev.Addr
		case ev.Msg == "worker ready" && ev.Generation == 1:
			ready++
		case ev.Msg == "exiting":
			return false, fmt.Errorf("handoff is exiting: %s", ev.Error)
		}
		return addr != "" && ready >= s.workers, nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the address and %d ready workers: %w", s.workers, err)
	}
	return addr, nil
}

// restart sends SIGHUP (SIGUSR2 to upgrade) and waits for it to complete.
// A roll is timed from its own start: the first `rolling` line after the
// signal names the roll's generation, and took runs from that line to the
// `roll complete` of the same generation. A signal that lands during a
// roll is queued by the supervisor and its roll starts when that one ends;
// the previous roll's `roll complete` is not this signal's.
func (s *handoffSubject) restart(ctx context.Context) (time.Time, time.Duration, error) {
	if s.upgrade {
		return s.upgradeInPlace(ctx)
	}
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if err := s.p.signal(syscall.SIGHUP); err != nil {
		return sent, 0, err
	}
	var gen uint64
	var began time.Time
	ln, err := c.find(ctx, func(ln logLine) (bool, error) {
		ev, ok := parseEvent(ln.text)
		switch {
		case !ok:
		case ev.Msg == "exiting":
			return false, fmt.Errorf("handoff is exiting: %s", ev.Error)
		case gen == 0 && ev.Msg == msgRolling:
			gen, began = ev.Generation, ln.at
		case gen != 0 && ev.Generation == gen && strings.HasPrefix(ev.Msg, "roll failed"):
			return false, &restartError{ev.Msg + ": " + ev.Error}
		}
		return ok && gen != 0 && ev.Msg == msgRollComplete && ev.Generation == gen, nil
	})
	switch {
	case err == nil:
		return sent, ln.at.Sub(began), nil
	case ctx.Err() != nil:
		return sent, 0, errIncomplete
	}
	return sent, 0, err
}

// upgradeInPlace sends SIGUSR2 and waits for the new image to say it took
// over; the upgrade starts at the signal.
func (s *handoffSubject) upgradeInPlace(ctx context.Context) (time.Time, time.Duration, error) {
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if err := s.p.signal(syscall.SIGUSR2); err != nil {
		return sent, 0, err
	}
	ln, err := c.find(ctx, func(ln logLine) (bool, error) {
		ev, ok := parseEvent(ln.text)
		switch {
		case !ok:
		case strings.HasPrefix(ev.Msg, "upgrade failed"):
			return false, &restartError{ev.Msg + ": " + ev.Error}
		case ev.Msg == "exiting":
			return false, fmt.Errorf("handoff is exiting: %s", ev.Error)
		}
		return ok && ev.Msg == "supervisor upgraded in place", nil
	})
	switch {
	case err == nil:
		return sent, ln.at.Sub(sent), nil
	case ctx.Err() != nil:
		return sent, 0, errIncomplete
	}
	return sent, 0, err
}

// rolls counts and times the rolls the supervisor logged since t, by
// generation; ok is false in upgrade mode.
func (s *handoffSubject) rolls(since time.Time) (rollCount, bool) {
	if s.upgrade || s.p == nil {
		return rollCount{}, false
	}
	return countRolls(s.p.log.since(since)), true
}

func (s *handoffSubject) stop() error {
	if s.p == nil {
		return nil
	}
	return s.p.stop(syscall.SIGTERM)
}

// goSubject is bench/peers/goserver: one process, or several sharing a
// port with SO_REUSEPORT.
type goSubject struct {
	bin        string
	label      string
	procs      int
	reusePort  bool
	gomaxprocs int // 0: the default
	echo       io.Writer
	ps         []*proc
}

func (s *goSubject) name() string { return s.label }

func (s *goSubject) start(ctx context.Context) (string, error) {
	addr := "127.0.0.1:0"
	var env []string
	if s.gomaxprocs > 0 {
		env = append(env, "GOMAXPROCS="+strconv.Itoa(s.gomaxprocs))
	}
	for i := range s.procs {
		args := []string{"-listen", addr}
		if s.reusePort {
			args = append(args, "-reuseport")
		}
		p, err := startProc(fmt.Sprintf("%s-%d", s.label, i), s.bin, args, env, s.echo)
		if err != nil {
			return "", err
		}
		s.ps = append(s.ps, p)
		ln, err := p.log.cursor().find(ctx, func(ln logLine) (bool, error) {
			return strings.HasPrefix(ln.text, "listening "), nil
		})
		if err != nil {
			return "", fmt.Errorf("%s: waiting for its address: %w", p.name, err)
		}
		addr = strings.TrimPrefix(ln.text, "listening ")
	}
	return addr, nil
}

func (s *goSubject) restart(context.Context) (time.Time, time.Duration, error) {
	return time.Now(), 0, fmt.Errorf("%s has no restart", s.label)
}

func (s *goSubject) stop() error {
	var errs []error
	for _, p := range s.ps {
		errs = append(errs, p.stop(syscall.SIGTERM))
	}
	return errors.Join(errs...)
}

// tableflipSubject is bench/peers/tableflip: SIGHUP upgrades it; every
// upgrade is a new process, the child of the one before, and the
// harness's once that one has exited.
type tableflipSubject struct {
	bin  string
	args []string // more flags (traffic: -h2c)
	// handoffDrain: the old process drains with handoff's
	// worker.ServeAndDrain instead of http.Server.Shutdown.
	handoffDrain bool
	echo         io.Writer
	p            *proc // the first process; its log is the whole chain's
	cur          int   // the pid serving
	pids         []int // every pid of the chain, for the parent check
}

// tfEvent is a line of the tableflip peer's log.
type tfEvent struct {
	Msg   string `json:"msg"`
	Pid   int    `json:"pid"`
	Addr  string `json:"addr"`
	Error string `json:"error"`
}

func (s *tableflipSubject) name() string {
	if s.handoffDrain {
		return nameTableflipDrain
	}
	return "tableflip"
}

func (s *tableflipSubject) start(ctx context.Context) (string, error) {
	args := append([]string{"-listen", "127.0.0.1:0"}, s.args...)
	if s.handoffDrain {
		args = append(args, "-drain", "handoff")
	}
	p, err := startProc(s.name(), s.bin, args, nil, s.echo)
	if err != nil {
		return "", err
	}
	s.p = p
	var ev tfEvent
	_, err = p.log.cursor().find(ctx, func(ln logLine) (bool, error) {
		if json.Unmarshal([]byte(ln.text), &ev) != nil {
			return false, nil
		}
		if ev.Msg == "exiting" {
			return false, fmt.Errorf("tableflip is exiting: %s", ev.Error)
		}
		return ev.Msg == "ready", nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for tableflip to be ready: %w", err)
	}
	s.cur = ev.Pid
	s.pids = append(s.pids, ev.Pid)
	return ev.Addr, nil
}

// signal sends sig to the serving process.
func (s *tableflipSubject) signal(sig syscall.Signal) error {
	if s.cur == s.p.cmd.Process.Pid {
		return s.p.signal(sig)
	}
	pf, err := openPid(s.cur, s.pids...)
	if err != nil {
		return err
	}
	defer pf.close()
	return pf.signal(sig)
}

func (s *tableflipSubject) restart(ctx context.Context) (time.Time, time.Duration, error) {
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if err := s.signal(syscall.SIGHUP); err != nil {
		return sent, 0, err
	}
	var ev tfEvent
	ln, err := c.find(ctx, func(ln logLine) (bool, error) {
		if json.Unmarshal([]byte(ln.text), &ev) != nil {
			return false, nil
		}
		switch {
		case ev.Msg == "upgrade failed" && ev.Pid == s.cur:
			return false, &restartError{ev.Error}
		case ev.Msg == "exiting" && ev.Error != "":
			return false, fmt.Errorf("tableflip pid %d is exiting: %s", ev.Pid, ev.Error)
		}
		return ev.Msg == "ready" && ev.Pid != s.cur, nil
	})
	switch {
	case err == nil:
		s.cur = ev.Pid
		s.pids = append(s.pids, ev.Pid)
		return sent, ln.at.Sub(sent), nil
	case ctx.Err() != nil:
		return sent, 0, errIncomplete
	}
	return sent, 0, err
}

func (s *tableflipSubject) stop() error {
	if s.p == nil {
		return nil
	}
	if s.cur == s.p.cmd.Process.Pid {
		return s.p.stop(syscall.SIGTERM)
	}
	var errs []error
	if pf, err := openPid(s.cur, s.pids...); err != nil {
		errs = append(errs, err)
	} else {
		if err := pf.signal(syscall.SIGTERM); err != nil {
			errs = append(errs, err)
		}
		if err := pf.waitExit(context.Background(), killAfter); err != nil {
			errs = append(errs, err)
			pf.signal(syscall.SIGKILL)
		}
		pf.close()
	}
	errs = append(errs, s.p.waitOrKill(killAfter)) // the first process exited after the first upgrade
	if s.p.waitErr != nil {
		errs = append(errs, fmt.Errorf("tableflip's first process: %w", s.p.waitErr))
	}
	errs = append(errs, s.p.endLog(logAfterEnd))
	return errors.Join(errs...)
}

// gunicornSubject is Debian's gunicorn with gthread workers; SIGHUP
// reloads it: new workers, the old ones shut down gracefully.
type gunicornSubject struct {
	bin, dir         string
	workers, threads int
	echo             io.Writer
	p                *proc
}

func (s *gunicornSubject) name() string { return "gunicorn" }

func (s *gunicornSubject) start(ctx context.Context) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	g := peers.Gunicorn{Dir: s.dir, Addr: addr, Workers: s.workers, Threads: s.threads}
	if err := g.Write(); err != nil {
		return "", err
	}
	args, err := g.Args()
	if err != nil {
		return "", err
	}
	if s.p, err = startProc("gunicorn", s.bin, args, []string{"PYTHONUNBUFFERED=1"}, s.echo); err != nil {
		return "", err
	}
	return addr, waitHTTP(ctx, addr, s.p)
}

func (s *gunicornSubject) restart(ctx context.Context) (time.Time, time.Duration, error) {
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if err := s.p.signal(syscall.SIGHUP); err != nil {
		return sent, 0, err
	}
	booted := 0
	ln, err := c.find(ctx, func(ln logLine) (bool, error) {
		if strings.Contains(ln.text, "Booting worker with pid") {
			booted++
		}
		return booted >= s.workers, nil
	})
	switch {
	case err == nil:
		return sent, ln.at.Sub(sent), nil
	case ctx.Err() != nil:
		return sent, 0, errIncomplete
	}
	return sent, 0, fmt.Errorf("gunicorn: %w", err)
}

func (s *gunicornSubject) stop() error {
	if s.p == nil {
		return nil
	}
	return s.p.stop(syscall.SIGTERM)
}

// nginxSubject is Debian's nginx in a private prefix. In the foreground
// (restarts) "nginx -s reload" restarts its workers; as a daemon
// (upgrades) a restart is the binary upgrade: USR2 to the master, which
// starts a new master, then WINCH and QUIT to the old one.
type nginxSubject struct {
	bin, prefix string
	workers     int
	daemon      bool
	h2c         bool   // the port speaks h2c only (traffic: h2)
	stream      string // a body served slowly at /stream (traffic: streams)
	echo        io.Writer
	n           peers.Nginx
	p           *proc  // the foreground master, or the launcher of the daemon
	master      *pidfd // the daemon's master
}

func (s *nginxSubject) name() string { return "nginx" }

func (s *nginxSubject) start(ctx context.Context) (string, error) {
	addr, err := freeAddr()
	if err != nil {
		return "", err
	}
	s.n = peers.Nginx{Prefix: s.prefix, Addr: addr, Workers: s.workers, Daemon: s.daemon, H2C: s.h2c, Stream: s.stream}
	if err := s.n.Write(); err != nil {
		return "", err
	}
	if s.p, err = startProc("nginx", s.bin, s.n.Args(), nil, s.echo); err != nil {
		return "", err
	}
	if s.daemon {
		// The launcher exits once the master has forked; the master is then
		// the harness's child (a subreaper's).
		pid, err := s.awaitPid(ctx, 0)
		if err != nil {
			return "", err
		}
		if s.master, err = openPid(pid, s.p.cmd.Process.Pid); err != nil {
			return "", err
		}
		return addr, waitHTTPOver(ctx, addr, nil, s.h2c)
	}
	return addr, waitHTTPOver(ctx, addr, s.p, s.h2c)
}

// awaitPid polls the pid file until it names a master other than old.
func (s *nginxSubject) awaitPid(ctx context.Context, old int) (int, error) {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(s.n.PidPath())
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 0 && pid != old {
			return pid, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for a new pid in %s: %w", s.n.PidPath(), context.Cause(ctx))
		case <-tick.C: // polling: nginx writes the pid file and says nothing else
		}
	}
}

// startedWorkers waits for n "start worker process" lines.
func (s *nginxSubject) startedWorkers(ctx context.Context, c *cursor) (logLine, error) {
	started := 0
	return c.find(ctx, func(ln logLine) (bool, error) {
		if strings.Contains(ln.text, "start worker process ") {
			started++
		}
		return started >= s.workers, nil
	})
}

func (s *nginxSubject) restart(ctx context.Context) (time.Time, time.Duration, error) {
	if s.daemon {
		return s.binaryUpgrade(ctx)
	}
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if out, err := exec.CommandContext(ctx, s.bin, append(s.n.Args(), "-s", "reload")...).CombinedOutput(); err != nil {
		if ctx.Err() != nil { // the pace ran out first (a loaded host): killed, not failed
			return sent, 0, errIncomplete
		}
		return sent, 0, fmt.Errorf("nginx -s reload: %w: %s", err, out)
	}
	ln, err := s.startedWorkers(ctx, c)
	switch {
	case err == nil:
		return sent, ln.at.Sub(sent), nil
	case ctx.Err() != nil:
		return sent, 0, errIncomplete
	}
	return sent, 0, fmt.Errorf("nginx: %w", err)
}

// upgradeBound bounds one binary upgrade, whatever the pace: a half-done
// one would leave two masters.
const upgradeBound = 20 * time.Second

func (s *nginxSubject) binaryUpgrade(ctx context.Context) (time.Time, time.Duration, error) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), upgradeBound)
	defer cancel()
	old := s.master
	c := s.p.log.cursorEnd()
	sent := time.Now()
	if err := old.signal(syscall.SIGUSR2); err != nil {
		return sent, 0, err
	}
	pid, err := s.awaitPid(bctx, old.pid)
	if err != nil {
		return sent, 0, err
	}
	nw, err := openPid(pid, old.pid)
	if err != nil {
		return sent, 0, err
	}
	ln, err := s.startedWorkers(bctx, c)
	if err != nil {
		nw.close()
		return sent, 0, fmt.Errorf("nginx: the new master's workers: %w", err)
	}
	took := ln.at.Sub(sent)
	// The old master's workers stop gracefully, then the old master.
	if err := errors.Join(old.signal(syscall.SIGWINCH), old.signal(syscall.SIGQUIT)); err != nil {
		nw.close()
		return sent, 0, err
	}
	s.master = nw
	err = old.waitExit(bctx, upgradeBound)
	old.close()
	return sent, took, err
}

func (s *nginxSubject) stop() error {
	if s.p == nil {
		return nil
	}
	if !s.daemon {
		return s.p.stop(syscall.SIGQUIT)
	}
	var errs []error
	if s.master != nil {
		if err := s.master.signal(syscall.SIGQUIT); err != nil {
			errs = append(errs, err)
		}
		if err := s.master.waitExit(context.Background(), killAfter); err != nil {
			errs = append(errs, err)
			s.master.signal(syscall.SIGKILL)
		}
		s.master.close()
	}
	errs = append(errs, s.p.waitOrKill(killAfter)) // the launcher exits once the daemon has forked
	if s.p.waitErr != nil {
		errs = append(errs, fmt.Errorf("nginx's launcher: %w", s.p.waitErr))
	}
	errs = append(errs, s.p.endLog(logAfterEnd))
	return errors.Join(errs...)
}

// tempDir makes a directory for one subject's files under the run's.
func tempDir(parent, name string) (string, error) {
	d, err := os.MkdirTemp(parent, name+"-")
	if err != nil {
		return "", err
	}
	return filepath.Abs(d)
}

// epoch is a log line's time in seconds since the epoch: handoff writes
// ISO 8601 text (older builds wrote the number).
type epoch float64

func (e *epoch) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return json.Unmarshal(b, (*float64)(e))
	}
	t, err := time.Parse("2006-01-02T15:04:05.000Z0700", s)
	if err != nil {
		return err
	}
	*e = epoch(float64(t.UnixNano()) / 1e9)
	return nil
}

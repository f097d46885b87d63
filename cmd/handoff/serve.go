package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/handoff-dev/handoff/listener"
	"github.com/handoff-dev/handoff/metrics"
	"github.com/handoff-dev/handoff/supervisor"
)

// controlDirSuffix and controlSocketName place the control socket next to
// the pid file when -control is not given: PIDFILE.ctl/control.sock.
const (
	controlDirSuffix  = ".ctl"
	controlSocketName = "control.sock"
)

// defaultControlPath is the control socket of the handoff whose pid file is
// pidfile.
func defaultControlPath(pidfile string) string {
	return filepath.Join(pidfile+controlDirSuffix, controlSocketName)
}

// serve runs the supervisor until it is stopped and returns the exit status.
func serve(cfg *serveConfig, stderr *os.File, start time.Time) int {
	log := newLogger(cfg.logFormat, stderr)
	defer log.Sync()
	err := supervise(cfg, log, start)
	var ue usageError
	switch {
	case err == nil:
		return cfg.remapExit.apply(exitOK)
	case errors.As(err, &ue):
		return usageFailed(stderr, err)
	}
	code := cfg.remapExit.apply(supervisor.ExitCode(err))
	fields := []zap.Field{zap.Error(err), zap.Int("exit_code", code)}
	if errors.Is(err, syscall.EADDRINUSE) {
		fields = append(fields, zap.String("hint", "another process listens there: "+
			"perhaps the workers of a handoff that was killed without its janitor; "+
			"ss -ltnp shows which process holds the port"))
	}
	log.Error("handoff exits", fields...)
	return code
}

// supervise sets up the sockets, the pid file and the control socket, and
// runs the supervisor. The error is nil after a requested stop.
func supervise(cfg *serveConfig, log *zap.Logger, start time.Time) error {
	// After an upgrade the sockets come from the old program: neither
	// -listen nor LISTEN_FDS is needed (the first program consumed it).
	resumed := supervisor.Resuming()
	socks, err := listener.Adopt()
	switch {
	case errors.Is(err, listener.ErrNoListeners):
		if err != listener.ErrNoListeners {
			// LISTEN_FDS was set, but for another process.
			log.Warn("ignoring the socket-activation variables", zap.Error(err))
		}
	case err != nil:
		return fmt.Errorf("sockets from systemd: %w", err)
	}
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	if len(cfg.listen) == 0 && len(socks) == 0 && !resumed {
		return usagef("no socket to pass on: give -listen ADDR, or start handoff from a systemd .socket unit")
	}

	opts := []supervisor.Option{
		supervisor.WithLogger(log),
		supervisor.WithSignals(),
		supervisor.WithListen(cfg.listen...),
		supervisor.WithSockets(socks...),
		supervisor.WithWorkers(cfg.workers),
		supervisor.WithReadiness(cfg.ready.r),
		supervisor.WithReadyTimeout(cfg.readyTimeout),
		supervisor.WithAcceptWindow(cfg.acceptWindow),
		supervisor.WithCanary(cfg.canary),
		supervisor.WithStopTimeout(cfg.stopTimeout),
		supervisor.WithStopSignal(cfg.stopSignal.sig),
		supervisor.WithWatchdog(cfg.watchdog),
		supervisor.WithSurge(cfg.surge),
		supervisor.WithMaxDraining(cfg.maxDraining),
		supervisor.WithMinUptime(cfg.minUptime),
		supervisor.WithBackoff(cfg.backoff, cfg.backoffMax),
		supervisor.WithMaxStartFailures(cfg.maxStartFailures),
		supervisor.WithMaxLifetime(cfg.maxLifetime, cfg.lifetimeJitter),
	}
	if cfg.subreaper {
		opts = append(opts, supervisor.WithSubreaper())
	}
	if cfg.cgroups != "" && cfg.cgroups != "auto" {
		opts = append(opts, supervisor.WithCgroups(cfg.cgroups == "on"))
	}
	opts = append(opts, supervisor.WithNotServedAfter(cfg.notServed), supervisor.WithHandover(cfg.handover),
		supervisor.WithReusePort(cfg.reusePort))
	if cfg.health != "" {
		opts = append(opts, supervisor.WithHealth(cfg.health))
	}
	if cfg.metrics != "" {
		opts = append(opts, supervisor.WithMetrics(cfg.metrics, metrics.Handler))
	}
	if cfg.shutdownDelay > 0 {
		opts = append(opts, supervisor.WithShutdownDelay(cfg.shutdownDelay))
	}
	if cfg.cred != nil {
		opts = append(opts, supervisor.WithCredential(*cfg.cred))
	}
	for _, p := range []*supervisor.Probe{cfg.probe.p, cfg.probeExec.p} {
		if p != nil {
			opts = append(opts, supervisor.WithProbe(*p))
		}
	}
	cmd := supervisor.Command{Path: cfg.command[0], Args: cfg.command, Dir: cfg.chdir}
	if len(cfg.env) > 0 {
		cmd.Env = append(os.Environ(), cfg.env...)
	}
	sup, err := supervisor.New(cmd, opts...)
	if err != nil {
		return usageError{err}
	}

	// After an upgrade in place the workers are already running, and only
	// this program can supervise them: the control socket and the pid file
	// are then not worth stopping for.
	setupFailed := func(err error) error {
		if resumed {
			log.Error("carrying on without it after the upgrade", zap.Error(err))
			return nil
		}
		return err
	}
	runDone := make(chan struct{})
	control, ownDir := cfg.control, false
	if control == "" && cfg.pidfile != "" {
		control, ownDir = defaultControlPath(cfg.pidfile), true
	}
	if control != "" {
		inst := instance{pid: os.Getpid(), version: versionString(), execTime: start, upgraded: resumed, command: cfg.command}
		inst.started = processStart(start)
		cs, err := listenControl(control, ownDir, sup, runDone, inst, log)
		if err != nil {
			if err := setupFailed(err); err != nil {
				return err
			}
		} else {
			defer cs.Close()
		}
	}
	// After the control socket, which refuses to start a second handoff with
	// the same pid file.
	if cfg.pidfile != "" {
		if err := writePidfile(cfg.pidfile, log); err != nil {
			if err := setupFailed(err); err != nil {
				return err
			}
		}
		defer removePidfile(cfg.pidfile, log) // if it names this process
	}

	fields := []zap.Field{
		zap.String("version", versionString()), zap.Int("pid", os.Getpid()),
		zap.String("command", strings.Join(cfg.command, " ")), zap.Int("workers", cfg.workers),
		zap.String("ready", cfg.ready.s),
	}
	if len(socks) > 0 {
		names := make([]string, len(socks))
		for i, s := range socks {
			names[i] = s.Name() + "=" + s.Addr().String()
		}
		fields = append(fields, zap.Strings("systemd_sockets", names))
	}
	if control != "" {
		fields = append(fields, zap.String("control", control))
	}
	if resumed {
		log.Info("handoff resuming after an upgrade in place", fields...)
	} else {
		log.Info("handoff starting", fields...)
	}
	defer close(runDone) // deferred last, so it runs before the control socket closes
	return sup.Run(context.Background())
}

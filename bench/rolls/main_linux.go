package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/load"
)

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rolls:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var echo io.Writer
	if cfg.verbose {
		echo = os.Stderr
	}
	rep := run(ctx, cfg, echo)
	rep.command = commandLine()
	rep.write(os.Stdout)
	if rep.failed() {
		stop()
		os.Exit(1)
	}
}

// parseFlags parses the command line; usage goes to w.
func parseFlags(args []string, w io.Writer) (config, error) {
	fs := flag.NewFlagSet("rolls", flag.ContinueOnError)
	fs.SetOutput(w)
	var cfg config
	var mode, method string
	fs.IntVar(&cfg.rolls, "rolls", 100, "rolling restarts (SIGHUP) to perform")
	fs.IntVar(&cfg.clients, "clients", 64, "concurrent keep-alive clients, one connection each")
	fs.IntVar(&cfg.workers, "workers", 4, "worker processes of the supervisor")
	fs.DurationVar(&cfg.steady, "steady", 5*time.Second, "length of the steady window measured before the rolls")
	fs.DurationVar(&cfg.gap, "gap", 0, "pause between a roll's completion and the next SIGHUP")
	fs.StringVar(&mode, "mode", "raw", "client: raw (never retries) or nethttp (Go's client, retries idempotent requests)")
	fs.StringVar(&method, "method", "both", "requests: GET, POST or both (alternating)")
	fs.DurationVar(&cfg.rollTimeout, "roll-timeout", 30*time.Second, "longest wait for one roll to complete")
	fs.DurationVar(&cfg.limit, "limit", 5*time.Minute, "bound on the whole run, build included")
	fs.StringVar(&cfg.bin, "bin", "", "a prebuilt example binary (default: build github.com/handoff-dev/handoff/example)")
	fs.BoolVar(&cfg.verbose, "v", false, "copy the supervisor's log to stderr")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.mode, err = load.ParseMode(mode); err != nil {
		return cfg, err
	}
	if cfg.method, err = load.ParseMethod(method); err != nil {
		return cfg, err
	}
	switch {
	case cfg.rolls < 0:
		return cfg, fmt.Errorf("-rolls %d is negative", cfg.rolls)
	case cfg.clients < 1:
		return cfg, fmt.Errorf("-clients %d: need at least 1", cfg.clients)
	case cfg.workers < 1:
		return cfg, fmt.Errorf("-workers %d: need at least 1", cfg.workers)
	case cfg.steady <= 0:
		return cfg, fmt.Errorf("-steady %v must be positive", cfg.steady)
	case cfg.gap < 0:
		return cfg, fmt.Errorf("-gap %v is negative", cfg.gap)
	case cfg.rollTimeout <= 0:
		return cfg, fmt.Errorf("-roll-timeout %v must be positive", cfg.rollTimeout)
	case cfg.limit <= 0:
		return cfg, fmt.Errorf("-limit %v must be positive", cfg.limit)
	}
	return cfg, nil
}

// commandLine renders how the harness was invoked; under go run the binary
// lives in a temporary build directory.
func commandLine() string {
	name := os.Args[0]
	if strings.Contains(name, string(filepath.Separator)+"go-build") {
		name = "go run ./rolls"
	}
	return strings.TrimSpace(name + " " + strings.Join(os.Args[1:], " "))
}

func describeMachine() machine {
	m := machine{nproc: runtime.NumCPU(), kernel: "unknown",
		goVer: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// run performs the whole measurement and returns its report; errors are in
// the report. Nothing it started outlives it.
func run(ctx context.Context, cfg config, echo io.Writer) *report {
	rep := &report{cfg: cfg, machine: describeMachine()}
	ctx, cancel := context.WithTimeout(ctx, cfg.limit)
	defer cancel()
	fail := func(err error) *report {
		rep.errs = append(rep.errs, err)
		return rep
	}

	bin := cfg.bin
	if bin == "" {
		dir, err := os.MkdirTemp("", "handoff-rolls-")
		if err != nil {
			return fail(err)
		}
		defer os.RemoveAll(dir)
		if bin, err = buildExample(ctx, dir); err != nil {
			return fail(err)
		}
	}

	sup, err := startSupervisor(bin, cfg.workers, echo)
	if err != nil {
		return fail(err)
	}
	if cfg.logTimeout > 0 {
		sup.logTimeout = cfg.logTimeout
	}
	defer func() {
		if err := sup.stop(); err != nil {
			rep.errs = append(rep.errs, err)
		}
		if len(rep.errs) > 0 {
			rep.errs = append(rep.errs, fmt.Errorf("the supervisor's last log lines:\n%s",
				strings.Join(sup.events.lastLines(), "\n")))
		}
	}()
	addr, err := sup.waitReady(ctx, cfg.workers)
	if err != nil {
		return fail(err)
	}

	l, err := load.Start(ctx, addr, load.WithClients(cfg.clients), load.WithMode(cfg.mode),
		load.WithMethod(cfg.method), load.WithDuration(cfg.limit))
	if err != nil {
		return fail(err)
	}
	defer func() { rep.res = l.Stop() }()

	rep.steady.From = time.Now()
	if err := sleep(ctx, cfg.steady); err != nil {
		return fail(fmt.Errorf("steady window: %w", err))
	}
	rep.steady.To = time.Now()

	for i := range cfg.rolls {
		if i > 0 && cfg.gap > 0 {
			if err := sleep(ctx, cfg.gap); err != nil {
				return fail(fmt.Errorf("gap before roll %d: %w", i+1, err))
			}
		}
		rctx, rcancel := context.WithTimeout(ctx, cfg.rollTimeout)
		sent, done, took, err := sup.roll(rctx)
		rcancel()
		if err != nil {
			return fail(fmt.Errorf("roll %d of %d: %w", i+1, cfg.rolls, err))
		}
		rep.rolls = append(rep.rolls, roll{window: load.Window{From: sent, To: done}, took: took})
	}

	rep.res = l.Stop()
	rep.generation = fmt.Sprintf("rolled to generation %d; a new connection afterwards was served by %s",
		sup.gen, servedBy(ctx, addr))
	return rep
}

// servedBy asks the server once, on a new connection, which worker and
// generation serve it. A retired worker may still accept for a moment
// after "roll complete" (it stops accepting when it handles its drain
// signal), so this is a note, not a check.
func servedBy(ctx context.Context, addr string) string {
	tr := &http.Transport{DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return err.Error()
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return fmt.Sprintf("generation %s (worker pid %s, status %d)", resp.Header.Get("X-Generation"),
		resp.Header.Get("X-Worker-Pid"), resp.StatusCode)
}

// sleep waits for d: the length of a measurement window, not a way to wait
// for an event.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

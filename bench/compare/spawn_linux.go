package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/handoff-dev/handoff/bench/internal/orphans"
)

// spawnTimeout bounds starting N workers, to the last one ready.
const spawnTimeout = 90 * time.Second

// handoffSpawn starts the example supervisor with n workers and times
// them from "starting workers" to each "worker ready", by the supervisor's
// own log timestamps; it samples the supervisor's threads and RSS while
// they start and reads them once every worker is ready.
func (h *harness) handoffSpawn(ctx context.Context, n, round int) *spawnRun {
	r := &spawnRun{who: "handoff", round: round, n: n}
	ctx, cancel := context.WithTimeout(ctx, spawnTimeout)
	defer cancel()
	p, err := startProc("handoff", h.bins.example, []string{"-listen", "127.0.0.1:0", "-workers", strconv.Itoa(n)}, nil, h.echo)
	if err != nil {
		r.err = err
		return r
	}
	pid := p.cmd.Process.Pid
	var sampler sync.WaitGroup
	sampling := make(chan struct{})
	sampler.Go(func() {
		t := time.NewTicker(10 * time.Millisecond)
		defer t.Stop()
		for {
			if th, rss, err := procStatus(pid); err == nil {
				r.maxThreads, r.maxRSS = max(r.maxThreads, th), max(r.maxRSS, rss)
			}
			select {
			case <-sampling:
				return
			case <-t.C:
			}
		}
	})

	var began, last float64
	_, err = p.log.cursor().find(ctx, func(ln logLine) (bool, error) {
		ev, ok := parseEvent(ln.text)
		switch {
		case !ok:
		case ev.Msg == "starting workers":
			began = float64(ev.TS)
		case ev.Msg == "worker ready" && ev.Generation == 1:
			last = max(last, float64(ev.TS))
			r.per = append(r.per, secs(ev.After))
		case ev.Msg == "exiting":
			return false, fmt.Errorf("handoff is exiting: %s", ev.Error)
		}
		return len(r.per) >= n, nil
	})
	close(sampling)
	sampler.Wait()
	if err != nil {
		r.err = fmt.Errorf("waiting for %d workers: %w", n, err)
	} else {
		r.total = secs(last - began)
		// Settled: what the supervisor holds while it only watches.
		if r.err = sleep(ctx, 500*time.Millisecond); r.err == nil {
			r.threads, r.rss, r.err = procStatus(pid)
			r.maxThreads, r.maxRSS = max(r.maxThreads, r.threads), max(r.maxRSS, r.rss)
		}
	}
	t := time.Now()
	if err := p.stop(syscall.SIGTERM); err != nil {
		r.err = errors.Join(r.err, err)
	}
	r.stop = time.Since(t)
	if alive, _, err := orphans.Sweep(); err != nil || alive > 0 {
		r.err = errors.Join(r.err, fmt.Errorf("%d processes outlived the supervisor (killed) %v", alive, err))
	}
	return r
}

// rawSpawn starts n copies of the same example binary as workers with
// os.StartProcess, each with a listening socket of its own as fd 3, and
// times each from its start to an answered request: the socket queues
// the connection until the worker accepts it. The example's own init sets
// LISTEN_PID (HANDOFF_TRAMPOLINE set empty), as it does under handoff.
// Its stop is SIGTERM to all of them and a wait for each.
func (h *harness) rawSpawn(ctx context.Context, n, round int) *spawnRun {
	r := &spawnRun{who: "raw os.StartProcess", round: round, n: n}
	ctx, cancel := context.WithTimeout(ctx, spawnTimeout)
	defer cancel()
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		r.err = err
		return r
	}
	defer devnull.Close()
	addrs := make([]string, n)
	files := make([]*os.File, n)
	defer func() {
		for _, f := range files {
			if f != nil {
				f.Close()
			}
		}
	}()
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			r.err = err
			return r
		}
		addrs[i] = ln.Addr().String()
		files[i], err = ln.(*net.TCPListener).File()
		ln.Close() // the duplicate in files[i] keeps the socket
		if err != nil {
			r.err = err
			return r
		}
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "LISTEN_") || strings.HasPrefix(kv, "HANDOFF_") || strings.HasPrefix(kv, "NOTIFY_SOCKET=")
	})
	env = append(env, "LISTEN_FDS=1", "LISTEN_FDNAMES=http", "HANDOFF_TRAMPOLINE=")

	procs := make([]*os.Process, 0, n)
	defer func() {
		// The raw baseline of a stop: SIGTERM to every worker at once, then
		// a wait for each.
		t := time.Now()
		for _, p := range procs {
			p.Signal(syscall.SIGTERM)
		}
		for _, p := range procs {
			waitOrKill(p, 10*time.Second)
		}
		r.stop = time.Since(t)
	}()
	ready := make([]time.Time, n)
	starts := make([]time.Time, n)
	errs := make([]error, n)
	var probes sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		p, err := os.StartProcess(h.bins.example, []string{h.bins.example, "-worker"}, &os.ProcAttr{
			Env: env, Files: []*os.File{devnull, devnull, devnull, files[i]},
		})
		starts[i] = time.Now()
		if err != nil {
			r.err = fmt.Errorf("starting worker %d: %w", i, err)
			break
		}
		procs = append(procs, p)
		probes.Go(func() { ready[i], errs[i] = probe(ctx, addrs[i]) })
	}
	probes.Wait()
	if r.err != nil {
		return r
	}
	if err := errors.Join(errs...); err != nil {
		r.err = err
		return r
	}
	var last time.Time
	for i := range n {
		r.per = append(r.per, ready[i].Sub(starts[i]))
		if ready[i].After(last) {
			last = ready[i]
		}
	}
	r.total = last.Sub(t0)
	return r
}

// probe sends one request on a new connection to addr and returns when
// the answer arrived.
func probe(ctx context.Context, addr string) (time.Time, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return time.Time{}, err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", addr); err != nil {
		return time.Time{}, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	at := time.Now()
	if err != nil {
		return at, fmt.Errorf("probing %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return at, fmt.Errorf("probing %s: status %d", addr, resp.StatusCode)
	}
	return at, nil
}

// waitOrKill waits for p, killing it after d.
func waitOrKill(p *os.Process, d time.Duration) {
	done := make(chan struct{})
	go func() {
		p.Wait()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		p.Kill()
		<-done
	}
}
